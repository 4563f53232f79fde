// FlattenQuant: the channel split is exact (W' x' = W x; the flattened statistics derived from
// the unflattened ones equal those summed from flattened data), `auto` keeps to its width
// budget, and on synthetic inputs with outlier channels flattening lowers the real output
// error of per-tensor W8A8 and of the INT4/INT8 rule (activations rounded as the kernels do,
// float64 products) below the same method with --flatten-threshold off.
#include "worker/methods/flattenquant_method.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "gtest/gtest.h"
#include "kernels/cpu/int8_activations.h"
#include "worker/methods/flatten_channels.h"
#include "worker/methods/method_registry.h"

namespace qshard {
namespace {

// Tokens × dim activations: Gaussian, channels i % 13 == 5 scaled ×25 (outliers), one channel
// all zero (a dead input).
std::vector<float> Activations(int64_t tokens, int64_t dim, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> x(tokens * dim);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t i = 0; i < dim; ++i) x[t * dim + i] = normal(rng) * (i % 13 == 5 ? 25.0f : 1.0f) * (i == 2 ? 0.0f : 1.0f);
  return x;
}

Tensor RandomWeight(int64_t out, int64_t in, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  Tensor w({out, in});
  for (float& v : w.values()) v = normal(rng);
  return w;
}

HessianSum Statistics(const std::vector<float>& x, int64_t dim, int64_t window) {
  HessianSum sum(dim);
  const int64_t tokens = static_cast<int64_t>(x.size()) / dim;
  for (int64_t t = 0; t < tokens; t += window) sum.AddWindow(x.data() + t * dim, std::min(window, tokens - t));
  return sum;
}

TEST(FlattenChannelsTest, ParsesTheThreshold) {
  EXPECT_EQ(ParseFlattenThreshold("off")->kind, FlattenThreshold::Kind::kOff);
  EXPECT_EQ(ParseFlattenThreshold("auto")->kind, FlattenThreshold::Kind::kAuto);
  EXPECT_EQ(ParseFlattenThreshold("2.5")->value, 2.5);
  for (const char* bad : {"", "0", "-1", "2.5x", "nan", "inf", "Auto"}) EXPECT_FALSE(ParseFlattenThreshold(bad).ok()) << bad;
}

TEST(FlattenChannelsTest, SplitsChannelsAboveTheThresholdIntoCeilingCopies) {
  const std::vector<float> abs_max = {0.5f, 3.0f, 2.0f, 0.0f, 7.1f};
  const std::vector<int32_t> channels = SplitChannels(abs_max, 2.0);
  EXPECT_EQ(channels, (std::vector<int32_t>{0, 1, 1, 2, 3, 4, 4, 4, 4}));
  EXPECT_EQ(CopiesPerChannel(channels), (std::vector<int32_t>{1, 2, 1, 1, 4}));
  EXPECT_EQ(SplitChannels(abs_max, ResolveFlattenThreshold({FlattenThreshold::Kind::kOff}, abs_max)).size(), 5u);
}

TEST(FlattenChannelsTest, AutoIsTheSmallestThresholdWithinTheWidthBudget) {
  std::mt19937 rng(3);
  std::lognormal_distribution<float> spread(0.0f, 1.5f);
  for (int64_t dim : {1, 7, 40, 129}) {
    std::vector<float> abs_max(dim);
    for (float& v : abs_max) v = spread(rng);
    const double t = AutoFlattenThreshold(abs_max);
    const int64_t budget = static_cast<int64_t>(kAutoAddedWidth * dim);
    EXPECT_LE(static_cast<int64_t>(SplitChannels(abs_max, t).size()) - dim, budget) << dim;
    EXPECT_GT(static_cast<int64_t>(SplitChannels(abs_max, t * (1 - 1e-9)).size()) - dim, budget) << dim;
  }
  EXPECT_EQ(AutoFlattenThreshold(std::vector<float>(4, 0.0f)), 1.0);
}

TEST(FlattenChannelsTest, RoundsTheWidthUpBySplittingTheWidestChannelsAgain) {
  const std::vector<float> abs_max = {1.0f, 6.0f, 2.0f, 5.0f};
  std::vector<int32_t> channels = SplitChannels(abs_max, 4.0);  // {0, 1, 1, 2, 3, 3}
  RoundSplitUp(abs_max, 4, channels);
  // Then 6/2 = 3 and 5/2 = 2.5 are the widest: channel 1 gets a third copy, then 3 a third.
  EXPECT_EQ(channels, (std::vector<int32_t>{0, 1, 1, 1, 2, 3, 3, 3}));
}

TEST(FlattenChannelsTest, DerivedStatisticsEqualThoseOfTheFlattenedData) {
  const int64_t dim = 31, tokens = 90;
  const std::vector<float> x = Activations(tokens, dim, 1);
  const HessianSum stats = Statistics(x, dim, 30);
  const std::vector<int32_t> channels = SplitChannels(stats.abs_max, AutoFlattenThreshold(stats.abs_max));
  ASSERT_GT(channels.size(), static_cast<size_t>(dim));
  const int64_t n = static_cast<int64_t>(channels.size());
  std::vector<float> flat(tokens * n);
  FlattenActivations(x.data(), tokens, dim, channels, CopiesPerChannel(channels), flat.data());
  const HessianSum derived = FlattenStatistics(stats, channels);
  const HessianSum summed = Statistics(flat, n, 30);
  EXPECT_EQ(derived.tokens, summed.tokens);
  for (int64_t j = 0; j < n; ++j) {
    EXPECT_FLOAT_EQ(derived.abs_max[j], summed.abs_max[j]) << j;
    for (int64_t l = 0; l < n; ++l)
      EXPECT_NEAR(derived.sum[j * n + l], summed.sum[j * n + l], 1e-4 * (1.0 + std::fabs(summed.sum[j * n + l])));
  }
  // And the flattened product is the original one.
  const Tensor w = RandomWeight(9, dim, 2), wf = FlattenWeight(w, channels);
  for (int64_t t = 0; t < tokens; t += 17)
    for (int64_t o = 0; o < 9; ++o) {
      double y = 0.0, yf = 0.0;
      for (int64_t i = 0; i < dim; ++i) y += double(w.at(o, i)) * x[t * dim + i];
      for (int64_t j = 0; j < n; ++j) yf += double(wf.at(o, j)) * flat[t * n + j];
      EXPECT_NEAR(yf, y, 1e-5 * (1.0 + std::fabs(y)));
    }
}

struct Outcome {
  double error = 0.0;  // Σ‖W x − Ŵ' q(x')‖² / Σ‖W x‖² over the tokens, float64
  std::map<std::string, QuantizedWeight> linears;
};

// Quantizes a two-linear group with flattenquant and measures its real output error with the
// activations flattened and rounded per tensor exactly as the kernels do.
Outcome QuantizeGroup(int bits, const std::string& threshold, double int4_max_error = 0.05) {
  const int64_t dim = 52, out = 40, tokens = 600;
  const std::vector<float> x = Activations(tokens, dim, 5);
  const HessianSum stats = Statistics(x, dim, 100);
  ModelConfig config;
  DecoderLayerWeights weights;
  weights.linears["a"].weight = RandomWeight(out, dim, 6);
  weights.linears["b"].weight = RandomWeight(out, dim, 7);
  MethodOptions options;
  options.method = "flattenquant";
  options.spec.bits = bits;
  options.flatten_threshold = threshold;
  options.flatten_int4_max_error = int4_max_error;
  auto method = (*FindMethod("flattenquant"))->make(options);
  EXPECT_TRUE(method.ok()) << method.status();
  QuantizedLayer done;
  GroupProblem problem;
  problem.config = &config;
  problem.linears = {"a", "b"};
  problem.input_stats = &stats;
  problem.weights = &weights;
  problem.quantized = &done;
  auto solution = (*method)->SolveGroup(problem);
  EXPECT_TRUE(solution.ok()) << solution.status();
  Outcome outcome;
  double noise = 0.0, signal = 0.0;
  for (const auto& [name, q] : solution->linears) {
    EXPECT_TRUE(q.Validate().ok()) << q.Validate();
    const Tensor& w = weights.linear(name).weight;
    const Tensor wq = q.Dequantized();
    std::vector<int32_t> channels = q.input_channel;
    if (channels.empty())
      for (int32_t c = 0; c < dim; ++c) channels.push_back(c);
    const int64_t n = static_cast<int64_t>(channels.size());
    std::vector<float> flat(tokens * n);
    std::vector<int8_t> codes(n);
    FlattenActivations(x.data(), tokens, dim, channels, CopiesPerChannel(channels), flat.data());
    for (int64_t t = 0; t < tokens; ++t) {
      kernels::QuantizeRowStatic(flat.data() + t * n, n, {q.act_bits, q.act_scale}, codes.data());
      for (int64_t o = 0; o < out; ++o) {
        double y = 0.0, yq = 0.0;
        for (int64_t i = 0; i < dim; ++i) y += double(w.at(o, i)) * x[t * dim + i];
        for (int64_t j = 0; j < n; ++j) yq += double(wq.at(o, j)) * q.act_scale * codes[j];
        noise += (y - yq) * (y - yq);
        signal += y * y;
      }
    }
  }
  outcome.error = noise / signal;
  outcome.linears = std::move(solution->linears);
  return outcome;
}

TEST(FlattenQuantMethodTest, FlatteningLowersTheRealOutputErrorAtW8A8) {
  const Outcome off = QuantizeGroup(8, "off"), flat = QuantizeGroup(8, "auto");
  for (const auto& [name, q] : flat.linears) {
    EXPECT_EQ(q.bits, 8);
    EXPECT_EQ(q.act_bits, 8);
    EXPECT_GT(q.cols, q.layer_cols()) << name;
    // The budget, then rounded up to whole packed words of 8 inputs.
    EXPECT_LE(q.cols - q.layer_cols(), static_cast<int64_t>(kAutoAddedWidth * 52) + 7);
    EXPECT_EQ(q.cols % 8, 0);
  }
  for (const auto& [name, q] : off.linears) EXPECT_TRUE(q.input_channel.empty()) << name;
  EXPECT_LT(flat.error, 0.8 * off.error) << "auto " << flat.error << " off " << off.error;
}

TEST(FlattenQuantMethodTest, TheInt4RuleTakesInt4OnlyWhereFlatteningMakesItCheapEnough) {
  // Unflattened, the ×25 outliers make 4-bit activations far too coarse: every linear stays INT8.
  const Outcome off = QuantizeGroup(4, "off");
  for (const auto& [name, q] : off.linears) EXPECT_EQ(q.act_bits, 8) << name;
  // A threshold of 1.5 (the bulk's range is about ±3.5) splits every channel: INT4 is allowed.
  const Outcome flat = QuantizeGroup(4, "1.5");
  for (const auto& [name, q] : flat.linears) {
    EXPECT_EQ(q.bits, 4) << name;
    EXPECT_EQ(q.act_bits, 4) << name;
  }
  EXPECT_LT(flat.error, 0.05 * 1.5);
  // A tighter bound than the flattened linears' estimate sends them back to INT8.
  for (const auto& [name, q] : QuantizeGroup(4, "1.5", 0.001).linears) EXPECT_EQ(q.act_bits, 8) << name;
}

// The INT4 rule's activation term against the noise measured on the data: copies of a split
// channel round alike, so their errors add coherently (an independent-noise estimate would be
// k times too low on a channel split k ways).
TEST(FlattenQuantMethodTest, ActivationNoiseEstimateMatchesTheMeasuredNoise) {
  const int64_t dim = 52, out = 40, tokens = 600;
  const std::vector<float> x = Activations(tokens, dim, 5);
  const HessianSum stats = Statistics(x, dim, 100);
  const Tensor w = RandomWeight(out, dim, 6);
  for (const char* threshold : {"off", "auto", "1.5"}) {
    const double t = ResolveFlattenThreshold(*ParseFlattenThreshold(threshold), stats.abs_max);
    const std::vector<int32_t> channels = SplitChannels(stats.abs_max, t);
    const HessianSum flat_stats = FlattenStatistics(stats, channels);
    const Tensor wf = FlattenWeight(w, channels);
    const int64_t n = static_cast<int64_t>(channels.size());
    const float range = *std::max_element(flat_stats.abs_max.begin(), flat_stats.abs_max.end());
    const kernels::StaticActivationQuant quant{8, range / 127.0f};
    std::vector<float> flat(tokens * n);
    std::vector<int8_t> codes(n);
    FlattenActivations(x.data(), tokens, dim, channels, CopiesPerChannel(channels), flat.data());
    double noise = 0.0, signal = 0.0;
    for (int64_t tk = 0; tk < tokens; ++tk) {
      const float* row = flat.data() + tk * n;
      kernels::QuantizeRowStatic(row, n, quant, codes.data());
      for (int64_t o = 0; o < out; ++o) {
        double y = 0.0, e = 0.0;
        for (int64_t j = 0; j < n; ++j) {
          y += double(wf.at(o, j)) * row[j];
          e += double(wf.at(o, j)) * (double(quant.scale) * codes[j] - row[j]);
        }
        noise += e * e;
        signal += y * y;
      }
    }
    const double estimate = ActivationNoiseError(wf, wf, flat_stats, channels, quant.scale);
    EXPECT_NEAR(estimate / (noise / signal), 1.0, 0.25) << threshold << ": estimate " << estimate << ", measured "
                                                         << noise / signal;
  }
}

TEST(FlattenQuantMethodTest, LayerWeightIsWhatTheFlattenedWeightComputesOnFloatInputs) {
  const Outcome flat = QuantizeGroup(8, "auto");
  const QuantizedWeight& q = flat.linears.at("a");
  const Tensor wl = q.LayerWeight(), wq = q.Dequantized();
  const std::vector<int32_t> copies = CopiesPerChannel(q.input_channel);
  ASSERT_EQ(wl.dim(1), q.layer_cols());
  for (int64_t o = 0; o < q.rows; ++o)
    for (int64_t c = 0; c < q.layer_cols(); ++c) {
      double sum = 0.0;
      for (int64_t j = 0; j < q.cols; ++j)
        if (q.input_channel[j] == c) sum += wq.at(o, j);
      EXPECT_NEAR(wl.at(o, c), sum / copies[c], 1e-6);
    }
}

TEST(FlattenQuantMethodTest, RejectsOptionsItCannotHonourNamingTheFlag) {
  const auto make = (*FindMethod("flattenquant"))->make;
  MethodOptions options;
  options.spec.bits = 3;
  EXPECT_NE(make(options).status().message().find("--bits"), std::string::npos);
  options.spec.bits = 8;
  options.spec.group_size = 32;
  EXPECT_NE(make(options).status().message().find("--group-size"), std::string::npos);
  options.spec.group_size = -1;
  options.flatten_threshold = "sometimes";
  EXPECT_NE(make(options).status().message().find("--flatten-threshold"), std::string::npos);
  options.flatten_threshold = "0.5";
  EXPECT_TRUE(make(options).ok());
  options.flatten_int4_max_error = 0.0;
  EXPECT_NE(make(options).status().message().find("--int4-max-error"), std::string::npos);
}

}  // namespace
}  // namespace qshard
