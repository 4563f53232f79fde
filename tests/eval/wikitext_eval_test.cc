// Real data end to end: TinyStories-656K on the WikiText-2 evaluation half (lines 2180-4358 of
// wiki.test.raw, seqlen 512), against perplexities computed by the plain-PyTorch reference
// (tests/reference/forward/make_golden.py) from Hugging Face tokenizer ids, and the greedy
// continuation of the model card's prompt.
#include <cmath>
#include <cstdio>

#include "core/tokenizer/eval_text.h"
#include "core/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "tests/model/golden_data.h"
#include "worker/eval/evaluate.h"
#include "worker/eval/generate.h"

namespace qshard {
namespace {

class WikiTextEvalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<nlohmann::json> manifest = testing::ReadGoldenManifest();
    ASSERT_TRUE(manifest.ok()) << manifest.status();
    golden_ = (*manifest)["wikitext2_eval_head"];
    generation_ = (*manifest)["generation"];
    absl::StatusOr<std::vector<int32_t>> ids = testing::ReadRawFile<int32_t>(golden_["ids"]);
    ASSERT_TRUE(ids.ok()) << ids.status();
    golden_ids_ = std::move(*ids);
    absl::StatusOr<std::unique_ptr<ResidentModel>> model = ResidentModel::Open(testing::kTinyStoriesDir);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
  }

  nlohmann::json golden_, generation_;
  std::vector<int32_t> golden_ids_;
  std::unique_ptr<ResidentModel> model_;
};

TEST_F(WikiTextEvalTest, PerplexityOfFirstWindowsMatchesTorchReference) {
  EvalOptions options;
  options.seqlen = golden_["seqlen"];
  options.max_windows = golden_["windows"];
  options.threads = 2;
  absl::StatusOr<EvalResult> r = Evaluate(*model_, golden_ids_, options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->windows, golden_["windows"].get<int64_t>());
  EXPECT_EQ(r->predictions, golden_["predictions"].get<int64_t>());
  const double expected = golden_["perplexity"];
  std::printf("first %lld windows of 512: perplexity %.6f (torch %.6f), %.0f tokens/s\n",
              static_cast<long long>(r->windows), r->perplexity, expected, r->tokens_per_second);
  EXPECT_NEAR(r->nll, golden_["nll"].get<double>(), 1e-5);
  EXPECT_NEAR(r->perplexity, expected, 1e-5 * expected);
}

TEST_F(WikiTextEvalTest, TokenizerProducesTheReferenceIds) {
  absl::StatusOr<Tokenizer> tokenizer = Tokenizer::FromModelDir(testing::kTinyStoriesDir);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  absl::StatusOr<std::string> text =
      ReadEvalText(golden_["text"], golden_["first_line"].get<int>(), golden_["last_line"].get<int>());
  ASSERT_TRUE(text.ok()) << text.status();
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer->Encode(*text);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(ids->size(), 283424u);  // ../shared/reference.md
  ASSERT_GE(ids->size(), golden_ids_.size());
  EXPECT_TRUE(std::equal(golden_ids_.begin(), golden_ids_.end(), ids->begin()));
}

TEST_F(WikiTextEvalTest, GreedyContinuationMatchesTorchReference) {
  const std::vector<int32_t> prompt = generation_["prompt"].get<std::vector<int32_t>>();
  absl::StatusOr<std::vector<int32_t>> generated =
      Generate(*model_, prompt, generation_["max_new_tokens"].get<int>(), generation_["eos"].get<int32_t>());
  ASSERT_TRUE(generated.ok()) << generated.status();
  EXPECT_EQ(*generated, generation_["generated"].get<std::vector<int32_t>>());
  EXPECT_FALSE(Generate(*model_, {}, 5, 2).ok());
}

}  // namespace
}  // namespace qshard
