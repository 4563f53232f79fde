// The real TinyStories model quantized (RTN, W4, groups of 32) and evaluated three ways on the
// same few WikiText-2 windows: through the exact CPU kernels, through weights dequantized at load
// (BLAS), and through the int8-activation kernels. The first two must agree to float rounding;
// the third is measured by its KL from the exact path.
#include <cmath>
#include <iostream>

#include "coordinator/quantize_job.h"
#include "coordinator/text_tokens.h"
#include "core/model_config.h"
#include "gtest/gtest.h"
#include "tests/core/scoped_temp_dir.h"
#include "worker/eval/evaluate.h"
#include "worker/export/gptq_tensor_source.h"

namespace qshard {
namespace {

constexpr char kModel[] = "../shared/data/tinystories-656k";
constexpr char kText[] = "../shared/data/wikitext-2-raw/wiki.test.raw";

std::unique_ptr<ResidentModel> LoadWith(const std::string& dir, GptqLinearMode mode) {
  auto checkpoint = Checkpoint::Open(dir);
  EXPECT_TRUE(checkpoint.ok()) << checkpoint.status();
  auto source = GptqTensorSource::Create(std::shared_ptr<const Checkpoint>(*std::move(checkpoint)), {mode, 2});
  EXPECT_TRUE(source.ok()) << source.status();
  auto config = LoadModelConfig(dir);
  EXPECT_TRUE(config.ok()) << config.status();
  auto model = ResidentModel::Load(*std::move(source), *config);
  EXPECT_TRUE(model.ok()) << model.status();
  (*model)->SetThreads(2);
  return *std::move(model);
}

TEST(GptqKernelEvalTest, ExactKernelsMatchTheDequantizedModelAndInt8IsClose) {
  testing::ScopedTempDir dir;
  QuantizeJobSpec spec;
  spec.model_dir = kModel;
  spec.out_dir = dir.Child("w4");
  spec.method.method = "rtn";
  spec.method.spec.bits = 4;
  spec.method.spec.group_size = 32;
  auto report = RunQuantizeJob(spec, [](const std::string&) {});
  ASSERT_TRUE(report.ok()) << report.status() << " (needs " << kModel << ")";

  const std::unique_ptr<ResidentModel> exact = LoadWith(spec.out_dir, GptqLinearMode::kExact);
  const std::unique_ptr<ResidentModel> dequantized = LoadWith(spec.out_dir, GptqLinearMode::kDequantize);
  const std::unique_ptr<ResidentModel> int8 = LoadWith(spec.out_dir, GptqLinearMode::kInt8);
  ASSERT_TRUE(exact && dequantized && int8);
  EXPECT_NE(exact->layer(0).linear("self_attn.q_proj").kernel, nullptr) << "exact path must not dequantize";
  EXPECT_EQ(exact->layer(0).linear("self_attn.q_proj").weight.size(), 0);
  EXPECT_EQ(dequantized->layer(0).linear("self_attn.q_proj").kernel, nullptr);

  auto tokenizer = Tokenizer::FromModelDir(kModel);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  auto tokens = TokenizeTextFile(*tokenizer, kText, LineRange{});
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EvalOptions options;
  options.seqlen = 256;
  options.max_windows = 3;
  auto through_kernels = Evaluate(*exact, *tokens, options, dequantized.get());
  ASSERT_TRUE(through_kernels.ok()) << through_kernels.status();
  auto through_int8 = Evaluate(*int8, *tokens, options, exact.get());
  ASSERT_TRUE(through_int8.ok()) << through_int8.status();
  std::cout << "perplexity exact kernels " << through_kernels->perplexity << ", dequantized "
            << through_kernels->base_perplexity << ", KL " << through_kernels->kl_divergence << "; int8 kernels "
            << through_int8->perplexity << ", KL(exact || int8) " << through_int8->kl_divergence << ", top-1 "
            << through_int8->top1_agreement << std::endl;

  // Float rounding only: fp32 sums in another order. A wrong code or scale in any linear moves
  // the perplexity by far more than 1e-5 relative.
  EXPECT_NEAR(through_kernels->perplexity, through_kernels->base_perplexity, 1e-5 * through_kernels->base_perplexity);
  EXPECT_LT(through_kernels->kl_divergence, 1e-8);
  EXPECT_GE(through_kernels->top1_agreement, 0.995);  // a near-tie may flip under rounding
  // Int8 activations are an approximation: a small, nonzero divergence from the exact path.
  EXPECT_GT(through_int8->kl_divergence, 0.0);
  EXPECT_LT(through_int8->kl_divergence, 0.05);
}

}  // namespace
}  // namespace qshard
