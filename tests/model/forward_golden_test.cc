// The CPU forward pass against golden logits from an independent plain-PyTorch reference
// (tests/reference/forward/make_golden.py): TinyStories-656K (LLaMA: RMSNorm, RoPE, GQA,
// SwiGLU, tied head stored as lm_head) and two synthetic OPT checkpoints (pre-LayerNorm fp32;
// post-LayerNorm fp16 with project_in/out, no final norm and unprefixed names).
#include <cmath>
#include <cstdio>

#include "gtest/gtest.h"
#include "tests/model/golden_data.h"
#include "worker/model/resident_model.h"

namespace qshard {
namespace {

TEST(ForwardGoldenTest, LogitsMatchTorchReference) {
  absl::StatusOr<std::vector<testing::GoldenCase>> cases = testing::ReadGoldenCases();
  ASSERT_TRUE(cases.ok()) << cases.status();
  ASSERT_GE(cases->size(), 6u);
  for (const testing::GoldenCase& g : *cases) {
    SCOPED_TRACE(g.name);
    absl::StatusOr<std::unique_ptr<ResidentModel>> model = ResidentModel::Open(g.model_dir);
    ASSERT_TRUE(model.ok()) << model.status();
    (*model)->SetThreads(2);
    absl::StatusOr<Tensor> logits = (*model)->Forward(g.tokens, g.batch, g.seq);
    ASSERT_TRUE(logits.ok()) << logits.status();
    const int64_t vocab = (*model)->config().vocab_size;
    ASSERT_EQ(logits->shape(), (std::vector<int64_t>{g.batch * g.seq, vocab}));
    ASSERT_EQ(g.logits.size(), g.rows.size() * vocab);
    double max_diff = 0.0, max_abs = 0.0;
    for (size_t r = 0; r < g.rows.size(); ++r) {
      for (int64_t v = 0; v < vocab; ++v) {
        const float expected = g.logits[r * vocab + v];
        max_diff = std::max(max_diff, static_cast<double>(std::fabs(logits->at(g.rows[r], v) - expected)));
        max_abs = std::max(max_abs, static_cast<double>(std::fabs(expected)));
      }
    }
    std::printf("%-28s max |logit - torch| = %.3g (logits up to %.1f)\n", g.name.c_str(), max_diff, max_abs);
    EXPECT_LT(max_diff, 1e-4);
  }
}

}  // namespace
}  // namespace qshard
