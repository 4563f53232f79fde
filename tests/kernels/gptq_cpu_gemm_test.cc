// The CPU GPTQ kernels (reference, and every tiled variant this CPU has) against a float64 oracle
// computed from the unpacked QuantizedWeight, on shapes that are not multiples of the tiles,
// with odd group sizes and act-order permutations, into outputs poisoned with NaN; and every
// variant against every other. Activations: fp32, int8 per token, and per tensor at 8 and 4
// bits (FlattenQuant's W8A8 / W4A4: with the W4 cases, int4 × int4 → int32), with a per-tensor
// scale that clips the largest activations. A variant this CPU lacks is skipped, not passed.
#include "kernels/cpu/gptq_cpu_gemm.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/gptq_reference.h"
#include "kernels/cpu/int8_activations.h"
#include "tests/kernels/gptq_vnni256_evex_twin.h"
#include "tests/quant/random_quantized_weight.h"
#include "worker/quant/gptq_pack.h"

namespace qshard::kernels {
namespace {

struct Case {
  int bits;
  int64_t out, in, group_size;
  bool act_order;
  int64_t tokens;
};

// Legal packed shapes (in, out multiples of 32 / gcd(32, bits)) that leave partial tiles of 16
// outputs, groups that do not fill whole blocks, and token counts off every register block.
const Case kCases[] = {
    {4, 40, 56, 7, true, 1},     {4, 24, 72, 13, false, 11}, {4, 8, 8, 1000, false, 3},
    {8, 20, 36, 5, true, 9},     {8, 4, 12, 12, false, 1},   {2, 48, 80, 24, true, 5},
    {2, 16, 48, 9, false, 17},   {3, 96, 160, 50, true, 7},  {3, 32, 64, 11, false, 2},
    {4, 136, 264, 128, true, 13}, {8, 52, 132, 31, true, 4},
    // From kPanelMinTokens (16) tokens the AVX2 fp32 path multiplies dequantized panels instead.
    {4, 40, 56, 7, true, 64},    {3, 96, 96, 24, false, 75}, {8, 20, 36, 5, true, 70},
    {2, 48, 80, 16, true, 67},   {4, 40, 1064, 37, true, 66},
    // Activations over kL2ActivationBytes (1 MiB): the fp32 path runs token blocks outer (on
    // AVX2 below kPanelMinTokens only), with a partial last block.
    {4, 40, 2056, 37, true, 131}, {8, 20, 1300, 64, false, 203}, {4, 24, 18728, 128, false, 14},
};

struct Layer {
  QuantizedWeight weight;
  GptqLinearTensors packed;
  GptqTiledWeights tiled;
};

Layer MakeLayer(const Case& c, uint32_t seed) {
  Layer layer;
  layer.weight = testing_support::RandomQuantizedWeight(c.bits, c.out, c.in, c.group_size, c.act_order, seed);
  auto packed = PackGptq(layer.weight);
  EXPECT_TRUE(packed.ok()) << packed.status();
  layer.packed = *std::move(packed);
  auto tiled = TileGptq(PackedView(layer.packed));
  EXPECT_TRUE(tiled.ok()) << tiled.status();
  layer.tiled = *std::move(tiled);
  return layer;
}

std::vector<float> RandomActivations(int64_t tokens, int64_t in, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(tokens * in);
  for (float& v : x) v = normal(rng);
  x[0] = 0.0f;  // exact zeros must stay exact
  return x;
}

// How a product treats its activations.
enum class Acts { kFp32, kInt8PerToken, kInt8PerTensor, kInt4PerTensor };
const Acts kAllActs[] = {Acts::kFp32, Acts::kInt8PerToken, Acts::kInt8PerTensor, Acts::kInt4PerTensor};

std::string ActsName(Acts acts) {
  switch (acts) {
    case Acts::kFp32: return "fp32";
    case Acts::kInt8PerToken: return "int8";
    case Acts::kInt8PerTensor: return "a8_tensor";
    case Acts::kInt4PerTensor: return "a4_tensor";
  }
  return "";
}

// The per-tensor quantizer of x: a scale 0.8 · max|x| / max code, so the largest activations
// clip (what calibration scales do to inputs beyond the calibration range).
StaticActivationQuant PerTensor(Acts acts, const std::vector<float>& x) {
  StaticActivationQuant quant;
  quant.bits = acts == Acts::kInt4PerTensor ? 4 : 8;
  float max_abs = 0.0f;
  for (float v : x) max_abs = std::max(max_abs, std::fabs(v));
  quant.scale = 0.8f * max_abs / static_cast<float>(ActivationMaxCode(quant.bits));
  return quant;
}

// y = x · Wᵀ by `variant` (or the plain reference when null) with activations `acts`.
absl::Status Product(const Layer& layer, const std::vector<float>& x, int64_t tokens, Acts acts,
                     const CpuVariant* variant, std::vector<float>& y) {
  if (variant == nullptr) {
    const layout::GptqPackedView view = PackedView(layer.packed);
    switch (acts) {
      case Acts::kFp32: ReferenceGptqGemm(view, x.data(), tokens, y.data()); break;
      case Acts::kInt8PerToken: ReferenceGptqGemmInt8(view, x.data(), tokens, y.data()); break;
      default: ReferenceGptqGemmStatic(view, x.data(), tokens, PerTensor(acts, x), y.data());
    }
    return absl::OkStatus();
  }
  switch (acts) {
    case Acts::kFp32:
      return GptqGemm(layer.tiled, x.data(), tokens, y.data(), GptqActivations::kFp32, *variant, nullptr);
    case Acts::kInt8PerToken:
      return GptqGemm(layer.tiled, x.data(), tokens, y.data(), GptqActivations::kInt8, *variant, nullptr);
    default: return GptqGemmStatic(layer.tiled, x.data(), tokens, y.data(), PerTensor(acts, x), *variant, nullptr);
  }
}

// y[t, o] in float64 and Σ|terms| (the scale of the rounding a correct fp32 sum may make).
// The activations are first quantized as `acts` says, as the integer kernels do.
struct Oracle {
  std::vector<double> y, magnitude;
};
Oracle Float64Product(const QuantizedWeight& w, const std::vector<float>& x, int64_t tokens, Acts acts) {
  Oracle r;
  r.y.assign(tokens * w.rows, 0.0);
  r.magnitude.assign(tokens * w.rows, 0.0);
  std::vector<int8_t> q(w.cols);
  std::vector<double> a(w.cols);
  for (int64_t t = 0; t < tokens; ++t) {
    const float* row = x.data() + t * w.cols;
    if (acts == Acts::kFp32) {
      for (int64_t i = 0; i < w.cols; ++i) a[i] = row[i];
    } else {
      double scale = 0.0;
      if (acts == Acts::kInt8PerToken) {
        scale = QuantizeRowInt8(row, w.cols, q.data());
      } else {
        const StaticActivationQuant quant = PerTensor(acts, x);
        // Written out rather than QuantizeRowStatic, so that the oracle checks the rounding too.
        const double limit = ActivationMaxCode(quant.bits);
        for (int64_t i = 0; i < w.cols; ++i)
          q[i] = static_cast<int8_t>(std::clamp<double>(std::nearbyint(row[i] / quant.scale), -limit, limit));
        scale = quant.scale;
      }
      for (int64_t i = 0; i < w.cols; ++i) a[i] = scale * q[i];
    }
    for (int64_t o = 0; o < w.rows; ++o) {
      double sum = 0.0, magnitude = 0.0;
      for (int64_t i = 0; i < w.cols; ++i) {
        const int64_t g = w.g_idx[i];
        const double weight = static_cast<double>(w.scales.at(g, o)) *
                              (w.codes[o * w.cols + i] - w.zeros[g * w.rows + o]);
        sum += a[i] * weight;
        magnitude += std::fabs(a[i] * weight);
      }
      r.y[t * w.rows + o] = sum;
      r.magnitude[t * w.rows + o] = magnitude;
    }
  }
  return r;
}

// |y − oracle| within a worst-case fp32 summation bound: in · 2^−23 · Σ|terms|. One wrong
// weight or activation costs about Σ|terms| / in, hundreds of times more at these sizes.
void ExpectNear(const std::vector<float>& y, const Oracle& oracle, int64_t in, const std::string& what) {
  ASSERT_EQ(y.size(), oracle.y.size());
  const double eps = std::numeric_limits<float>::epsilon();
  int failures = 0;
  for (size_t k = 0; k < y.size() && failures < 5; ++k) {
    const double tolerance = (in + 4) * eps * oracle.magnitude[k] + 1e-30;
    if (!(std::fabs(y[k] - oracle.y[k]) <= tolerance)) {  // NaN (unwritten) fails too
      ADD_FAILURE() << what << ": y[" << k << "] = " << y[k] << ", float64 " << oracle.y[k] << " ± " << tolerance;
      ++failures;
    }
  }
}

std::string Describe(const Case& c) {
  return "W" + std::to_string(c.bits) + " out " + std::to_string(c.out) + " in " + std::to_string(c.in) + " group " +
         std::to_string(c.group_size) + (c.act_order ? " act-order" : "") + " tokens " + std::to_string(c.tokens);
}

std::vector<float> Poisoned(int64_t n) { return std::vector<float>(n, std::numeric_limits<float>::quiet_NaN()); }

TEST(GptqReferenceTest, MatchesFloat64OnEveryCase) {
  uint32_t seed = 1;
  for (const Case& c : kCases) {
    const Layer layer = MakeLayer(c, seed++);
    const std::vector<float> x = RandomActivations(c.tokens, c.in, seed++);
    for (Acts acts : kAllActs) {
      std::vector<float> y = Poisoned(c.tokens * c.out);
      ASSERT_TRUE(Product(layer, x, c.tokens, acts, nullptr, y).ok());
      ExpectNear(y, Float64Product(layer.weight, x, c.tokens, acts), c.in, "reference " + ActsName(acts) + " " + Describe(c));
    }
  }
}

struct VariantParam {
  Acts acts;
  CpuVariant variant;
};

std::string ParamName(const testing::TestParamInfo<VariantParam>& info) {
  return ActsName(info.param.acts) + "_" + CpuVariantName(info.param.variant);
}

// Every integer-activation mode runs on the int8 kernels' variants.
std::vector<CpuVariant> VariantsOf(Acts acts) {
  return GptqVariants(acts == Acts::kFp32 ? GptqActivations::kFp32 : GptqActivations::kInt8);
}

std::vector<VariantParam> AllVariants() {
  std::vector<VariantParam> all;
  for (Acts acts : kAllActs)
    for (CpuVariant v : VariantsOf(acts)) all.push_back({acts, v});
  return all;
}

class GptqVariantTest : public testing::TestWithParam<VariantParam> {
 protected:
  void SetUp() override {
    if (!CpuHasVariant(GetParam().variant))
      GTEST_SKIP() << "this CPU lacks " << CpuVariantName(GetParam().variant) << " (has "
                   << GetCpuFeatures().ToString() << ")";
  }
};

TEST_P(GptqVariantTest, MatchesFloat64AndReferenceIntoPoisonedOutputs) {
  uint32_t seed = 100;
  for (const Case& c : kCases) {
    const Layer layer = MakeLayer(c, seed++);
    const std::vector<float> x = RandomActivations(c.tokens, c.in, seed++);
    std::vector<float> y = Poisoned(c.tokens * c.out), reference = Poisoned(c.tokens * c.out);
    ASSERT_TRUE(Product(layer, x, c.tokens, GetParam().acts, &GetParam().variant, y).ok());
    const std::string what = std::string(CpuVariantName(GetParam().variant)) + " " + Describe(c);
    const Oracle oracle = Float64Product(layer.weight, x, c.tokens, GetParam().acts);
    ExpectNear(y, oracle, c.in, what);
    ASSERT_TRUE(Product(layer, x, c.tokens, GetParam().acts, nullptr, reference).ok());
    for (size_t k = 0; k < y.size(); ++k)
      ASSERT_NEAR(y[k], reference[k], 2 * (c.in + 4) * std::numeric_limits<float>::epsilon() * oracle.magnitude[k])
          << what << " vs reference at " << k;
  }
}

TEST_P(GptqVariantTest, ThreadsGiveTheSameBits) {
  const Case c = {4, 200, 96, 16, true, 6};  // 13 tiles over 3 threads
  const Layer layer = MakeLayer(c, 7);
  const std::vector<float> x = RandomActivations(c.tokens, c.in, 8);
  std::vector<float> alone = Poisoned(c.tokens * c.out), threaded = Poisoned(c.tokens * c.out);
  ThreadPool pool(3);
  const GptqActivations kind = GetParam().acts == Acts::kFp32 ? GptqActivations::kFp32 : GptqActivations::kInt8;
  if (GetParam().acts == Acts::kInt8PerTensor || GetParam().acts == Acts::kInt4PerTensor) {
    const StaticActivationQuant quant = PerTensor(GetParam().acts, x);
    ASSERT_TRUE(GptqGemmStatic(layer.tiled, x.data(), c.tokens, alone.data(), quant, GetParam().variant, nullptr).ok());
    ASSERT_TRUE(GptqGemmStatic(layer.tiled, x.data(), c.tokens, threaded.data(), quant, GetParam().variant, &pool).ok());
  } else {
    ASSERT_TRUE(GptqGemm(layer.tiled, x.data(), c.tokens, alone.data(), kind, GetParam().variant, nullptr).ok());
    ASSERT_TRUE(GptqGemm(layer.tiled, x.data(), c.tokens, threaded.data(), kind, GetParam().variant, &pool).ok());
  }
  EXPECT_EQ(alone, threaded);
}

INSTANTIATE_TEST_SUITE_P(AllVariants, GptqVariantTest, testing::ValuesIn(AllVariants()), ParamName);

// Every available variant against every other on the same inputs: the SIMD units must agree with
// the portable one to float rounding, not only each with the oracle.
TEST(GptqVariantAgreementTest, AvailableVariantsAgreePairwise) {
  const Case c = {4, 72, 136, 19, true, 10};
  const Layer layer = MakeLayer(c, 11);
  const std::vector<float> x = RandomActivations(c.tokens, c.in, 12);
  for (Acts a : kAllActs) {
    const Oracle oracle = Float64Product(layer.weight, x, c.tokens, a);
    std::vector<std::pair<CpuVariant, std::vector<float>>> results;
    for (CpuVariant v : VariantsOf(a)) {
      if (!CpuHasVariant(v)) continue;
      std::vector<float> y = Poisoned(c.tokens * c.out);
      ASSERT_TRUE(Product(layer, x, c.tokens, a, &v, y).ok());
      results.emplace_back(v, std::move(y));
    }
    for (size_t i = 0; i < results.size(); ++i)
      for (size_t j = i + 1; j < results.size(); ++j)
        for (size_t k = 0; k < results[i].second.size(); ++k) {
          const double tolerance = 2 * (c.in + 4) * std::numeric_limits<float>::epsilon() * oracle.magnitude[k];
          ASSERT_NEAR(results[i].second[k], results[j].second[k], tolerance)
              << CpuVariantName(results[i].first) << " vs " << CpuVariantName(results[j].first) << " at " << k;
        }
  }
}

// The AVX-VNNI kernel's tile logic through its EVEX twin (gptq_vnni256_evex_twin.h) on every case
// and integer-activation mode: against the float64 oracle, and bit for bit against the AVX2
// kernel, whose 8-lane tiles add the same exact int32 sums and scale them in the same order.
TEST(GptqAvxVnniTwinTest, MatchesFloat64AndTheAvx2KernelBitForBit) {
  if (!GetCpuFeatures().HasAvx512Vnni() || !CpuHasVariant(CpuVariant::kAvx2))
    GTEST_SKIP() << "the twin needs AVX-512 VNNI (this CPU has " << GetCpuFeatures().ToString() << ")";
  uint32_t seed = 300;
  for (const Case& c : kCases) {
    const Layer layer = MakeLayer(c, seed++);
    const std::vector<float> x = RandomActivations(c.tokens, c.in, seed++);
    for (Acts acts : {Acts::kInt8PerToken, Acts::kInt8PerTensor, Acts::kInt4PerTensor}) {
      const std::string what = "avxvnni twin " + ActsName(acts) + " " + Describe(c);
      const StaticActivationQuant per_tensor = PerTensor(acts, x);
      const StaticActivationQuant* quant = acts == Acts::kInt8PerToken ? nullptr : &per_tensor;
      std::vector<float> twin = Poisoned(c.tokens * c.out), avx2 = Poisoned(c.tokens * c.out);
      internal::GptqGemmInt8With(internal::Int8TilesVnni256EvexTwin, layer.tiled, x.data(), c.tokens, twin.data(),
                                 quant, nullptr);
      ExpectNear(twin, Float64Product(layer.weight, x, c.tokens, acts), c.in, what);
      const CpuVariant avx2_variant = CpuVariant::kAvx2;
      ASSERT_TRUE(Product(layer, x, c.tokens, acts, &avx2_variant, avx2).ok());
      EXPECT_EQ(twin, avx2) << what;
    }
  }
}

// The int8 path is an approximation of the exact one: its error stays within what rounding each
// activation to 1/254 of its token's range allows (half a step per term).
TEST(GptqInt8Test, StaysWithinActivationRoundingOfTheExactProduct) {
  const Case c = {8, 64, 256, 64, true, 4};
  const Layer layer = MakeLayer(c, 21);
  const std::vector<float> x = RandomActivations(c.tokens, c.in, 22);
  std::vector<float> y = Poisoned(c.tokens * c.out);
  ASSERT_TRUE(GptqGemm(layer.tiled, x.data(), c.tokens, y.data(), GptqActivations::kInt8,
                       BestGptqVariant(GptqActivations::kInt8), nullptr).ok());
  const Oracle exact = Float64Product(layer.weight, x, c.tokens, Acts::kFp32);
  const QuantizedWeight& w = layer.weight;
  for (int64_t t = 0; t < c.tokens; ++t) {
    float max_abs = 0.0f;
    for (int64_t i = 0; i < c.in; ++i) max_abs = std::max(max_abs, std::fabs(x[t * c.in + i]));
    for (int64_t o = 0; o < c.out; ++o) {
      double abs_weights = 0.0;
      for (int64_t i = 0; i < c.in; ++i)
        abs_weights += std::fabs(w.scales.at(w.g_idx[i], o) * (w.codes[o * c.in + i] - w.zeros[w.g_idx[i] * c.out + o]));
      const double bound = 0.5 * max_abs / 127.0 * abs_weights * 1.001;
      EXPECT_NEAR(y[t * c.out + o], exact.y[t * c.out + o], bound) << t << "," << o;
    }
  }
}

TEST(GptqCpuGemmTest, RejectsVariantsWithoutAKernelAndBadGroupIndices) {
  const Layer layer = MakeLayer({4, 16, 16, 8, false, 1}, 31);
  std::vector<float> x(16, 1.0f), y(16);
  EXPECT_FALSE(GptqGemm(layer.tiled, x.data(), 1, y.data(), GptqActivations::kInt8, CpuVariant::kAvx512, nullptr).ok());
  EXPECT_FALSE(GptqGemm(layer.tiled, x.data(), 1, y.data(), GptqActivations::kFp32, CpuVariant::kAvx512Vnni, nullptr)
                   .ok());
  EXPECT_FALSE(GptqGemmStatic(layer.tiled, x.data(), 1, y.data(), {.bits = 4, .scale = 0.1f}, CpuVariant::kAvx512,
                              nullptr).ok());
  EXPECT_FALSE(GptqGemmStatic(layer.tiled, x.data(), 1, y.data(), {.bits = 3, .scale = 0.1f}, CpuVariant::kGeneric,
                              nullptr).ok());
  EXPECT_FALSE(GptqGemmStatic(layer.tiled, x.data(), 1, y.data(), {.bits = 4, .scale = 0.0f}, CpuVariant::kGeneric,
                              nullptr).ok());
  GptqLinearTensors bad = layer.packed;
  bad.g_idx[3] = static_cast<int32_t>(bad.groups);
  const auto tiled = TileGptq(PackedView(bad));
  ASSERT_FALSE(tiled.ok());
  EXPECT_NE(tiled.status().message().find("g_idx[3]"), std::string::npos) << tiled.status();
}

}  // namespace
}  // namespace qshard::kernels
