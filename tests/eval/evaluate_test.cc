// Evaluate() against direct computations: perplexity over non-overlapping windows (tail
// dropped) from per-window forward passes and a plain float64 log-softmax; KL and top-1
// agreement of a model against itself and against a perturbed copy; batching invariance,
// progress reports and input errors.
#include "worker/eval/evaluate.h"
#include "worker/eval/forward_benchmark.h"

#include <cmath>
#include <random>

#include "gtest/gtest.h"
#include "tests/model/golden_data.h"

namespace qshard {
namespace {

constexpr char kTinyOpt[] = "tests/reference/forward/tiny-opt";

std::unique_ptr<ResidentModel> OpenModel(const std::string& dir) {
  absl::StatusOr<std::unique_ptr<ResidentModel>> model = ResidentModel::Open(dir);
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return nullptr;
  (*model)->SetThreads(2);
  return std::move(*model);
}

std::vector<int32_t> RandomTokens(int64_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> tokens(n);
  for (int32_t& t : tokens) t = id(rng);
  return tokens;
}

// Per-window forward passes and a naive float64 log-softmax (logits here are small enough
// that exp() needs no shift).
struct Direct {
  double nll = 0.0, base_nll = 0.0, kl = 0.0, agreement = 0.0;
};
Direct DirectComputation(const ResidentModel& model, const ResidentModel& base, const std::vector<int32_t>& tokens,
                         int64_t seqlen, int64_t windows) {
  Direct d;
  int64_t predictions = 0;
  for (int64_t w = 0; w < windows; ++w) {
    const std::vector<int32_t> window(tokens.begin() + w * seqlen, tokens.begin() + (w + 1) * seqlen);
    const Tensor logits = *model.Forward(window, 1, seqlen);
    const Tensor base_logits = *base.Forward(window, 1, seqlen);
    for (int64_t t = 0; t + 1 < seqlen; ++t, ++predictions) {
      double z = 0.0, base_z = 0.0;
      int64_t best = 0, base_best = 0;
      for (int64_t v = 0; v < logits.cols(); ++v) {
        z += std::exp(static_cast<double>(logits.at(t, v)));
        base_z += std::exp(static_cast<double>(base_logits.at(t, v)));
        if (logits.at(t, v) > logits.at(t, best)) best = v;
        if (base_logits.at(t, v) > base_logits.at(t, base_best)) base_best = v;
      }
      for (int64_t v = 0; v < logits.cols(); ++v) {
        const double p = std::exp(static_cast<double>(logits.at(t, v))) / z;
        const double base_p = std::exp(static_cast<double>(base_logits.at(t, v))) / base_z;
        d.kl += base_p * std::log(base_p / p);
      }
      d.nll -= std::log(std::exp(static_cast<double>(logits.at(t, window[t + 1]))) / z);
      d.base_nll -= std::log(std::exp(static_cast<double>(base_logits.at(t, window[t + 1]))) / base_z);
      d.agreement += best == base_best ? 1.0 : 0.0;
    }
  }
  d.nll /= predictions;
  d.base_nll /= predictions;
  d.kl /= predictions;
  d.agreement /= predictions;
  return d;
}

class EvaluateDirTest : public ::testing::TestWithParam<std::string> {};

TEST_P(EvaluateDirTest, PerplexityMatchesDirectComputation) {
  std::unique_ptr<ResidentModel> model = OpenModel(GetParam());
  ASSERT_NE(model, nullptr);
  const int64_t seqlen = 37;
  const std::vector<int32_t> tokens = RandomTokens(3 * seqlen + 20, model->config().vocab_size, 5);  // 20 dropped
  EvalOptions options;
  options.seqlen = seqlen;
  options.batch_windows = 2;
  absl::StatusOr<EvalResult> r = Evaluate(*model, tokens, options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->windows, 3);
  EXPECT_EQ(r->seqlen, seqlen);
  EXPECT_EQ(r->tokens, 3 * seqlen);
  EXPECT_EQ(r->predictions, 3 * (seqlen - 1));
  EXPECT_FALSE(r->has_base);
  const Direct direct = DirectComputation(*model, *model, tokens, seqlen, 3);
  EXPECT_NEAR(r->nll, direct.nll, 1e-5);
  EXPECT_NEAR(r->perplexity, std::exp(direct.nll), 1e-5 * std::exp(direct.nll));
  EXPECT_GT(r->seconds, 0.0);
  EXPECT_GT(r->tokens_per_second, 0.0);

  // Batching, threads and max_windows change nothing but the amount of work.
  options.batch_windows = 1;
  options.threads = 1;
  options.max_windows = 2;
  absl::StatusOr<EvalResult> two = Evaluate(*model, tokens, options);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(two->windows, 2);
  EXPECT_NEAR(two->nll, DirectComputation(*model, *model, tokens, seqlen, 2).nll, 1e-5);
}

TEST_P(EvaluateDirTest, DivergenceFromItselfIsZeroAndFromPerturbedCopyIsNot) {
  std::unique_ptr<ResidentModel> model = OpenModel(GetParam());
  std::unique_ptr<ResidentModel> base = OpenModel(GetParam());
  ASSERT_NE(model, nullptr);
  ASSERT_NE(base, nullptr);
  const int64_t seqlen = 24;
  const std::vector<int32_t> tokens = RandomTokens(4 * seqlen, model->config().vocab_size, 6);
  EvalOptions options;
  options.seqlen = seqlen;
  options.batch_windows = 3;
  std::vector<int64_t> reported;
  absl::StatusOr<EvalResult> same =
      Evaluate(*model, tokens, options, base.get(), [&](int64_t done, int64_t total) {
        EXPECT_EQ(total, 4);
        reported.push_back(done);
      });
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(reported, (std::vector<int64_t>{3, 4}));
  EXPECT_TRUE(same->has_base);
  EXPECT_EQ(same->kl_divergence, 0.0);
  EXPECT_EQ(same->top1_agreement, 1.0);
  EXPECT_DOUBLE_EQ(same->base_perplexity, same->perplexity);

  // Noise on one MLP projection, about 30 % of its weights' spread.
  Tensor& w = model->layer(0).linears.begin()->second.weight;
  std::mt19937 rng(9);
  double spread = 0.0;
  for (float v : w.values()) spread += static_cast<double>(v) * v / w.size();
  std::normal_distribution<float> noise(0.0f, static_cast<float>(0.3 * std::sqrt(spread)));
  for (float& v : w.values()) v += noise(rng);
  absl::StatusOr<EvalResult> perturbed = Evaluate(*model, tokens, options, base.get());
  ASSERT_TRUE(perturbed.ok());
  const Direct direct = DirectComputation(*model, *base, tokens, seqlen, 4);
  EXPECT_GT(perturbed->kl_divergence, 1e-4);
  EXPECT_NEAR(perturbed->kl_divergence, direct.kl, 1e-6 + 1e-4 * direct.kl);
  EXPECT_NEAR(perturbed->top1_agreement, direct.agreement, 1e-12);
  EXPECT_LT(perturbed->top1_agreement, 1.0);
  EXPECT_NEAR(perturbed->nll, direct.nll, 1e-5);
  EXPECT_NEAR(perturbed->base_perplexity, same->perplexity, 1e-9 * same->perplexity);
  EXPECT_NE(perturbed->perplexity, same->perplexity);
}

INSTANTIATE_TEST_SUITE_P(Models, EvaluateDirTest,
                         ::testing::Values(std::string(testing::kTinyStoriesDir), std::string(kTinyOpt)));

TEST(EvaluateTest, RejectsBadRequests) {
  std::unique_ptr<ResidentModel> model = OpenModel(testing::kTinyStoriesDir);
  std::unique_ptr<ResidentModel> opt = OpenModel(kTinyOpt);
  ASSERT_NE(model, nullptr);
  ASSERT_NE(opt, nullptr);
  const std::vector<int32_t> tokens = RandomTokens(100, 100, 7);
  EvalOptions options;
  options.seqlen = 101;
  EXPECT_FALSE(Evaluate(*model, tokens, options).ok());  // not one window
  options.seqlen = 1;
  EXPECT_FALSE(Evaluate(*model, tokens, options).ok());  // nothing to predict
  options.seqlen = 513;
  EXPECT_FALSE(Evaluate(*model, std::vector<int32_t>(1024, 5), options).ok());  // beyond max positions
  options.seqlen = 50;
  EXPECT_FALSE(Evaluate(*model, tokens, options, opt.get()).ok());  // different vocabularies
  std::vector<int32_t> bad = tokens;
  bad[70] = 5000;
  absl::StatusOr<EvalResult> out_of_vocab = Evaluate(*model, bad, options);
  ASSERT_FALSE(out_of_vocab.ok());
  EXPECT_NE(out_of_vocab.status().message().find("5000"), absl::string_view::npos);
  options.seqlen = 0;  // the default: min(2048, max positions) = 64 for tiny-opt
  absl::StatusOr<EvalResult> defaulted = Evaluate(*opt, tokens, options);
  ASSERT_TRUE(defaulted.ok()) << defaulted.status();
  EXPECT_EQ(defaulted->seqlen, 64);
  EXPECT_EQ(defaulted->windows, 1);
}

TEST(ForwardBenchmarkTest, TimesTheRequestedWindows) {
  std::unique_ptr<ResidentModel> model = OpenModel(kTinyOpt);
  ASSERT_NE(model, nullptr);
  const std::vector<int32_t> tokens = RandomTokens(5 * 16, model->config().vocab_size, 8);
  ForwardBenchmarkOptions options;
  options.seqlen = 16;
  options.windows = 5;
  options.batch_windows = 2;
  options.repeats = 2;
  absl::StatusOr<ForwardBenchmarkResult> r = BenchmarkForward(*model, tokens, options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->tokens, 80);
  EXPECT_GT(r->seconds, 0.0);
  EXPECT_NEAR(r->tokens_per_second, 80 / r->seconds, 1e-9 * r->tokens_per_second);
  options.windows = 6;  // more than the tokens hold
  EXPECT_FALSE(BenchmarkForward(*model, tokens, options).ok());
  options.windows = 5;
  options.seqlen = 65;  // beyond tiny-opt's learned positions
  EXPECT_FALSE(BenchmarkForward(*model, std::vector<int32_t>(5 * 65, 1), options).ok());
}

}  // namespace
}  // namespace qshard
