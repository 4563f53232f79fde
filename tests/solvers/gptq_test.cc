#include "worker/solvers/gptq.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/solvers/gptq_reference.h"
#include "tests/solvers/test_data.h"
#include "worker/quant/gptq_pack.h"
#include "worker/solvers/proxy_error.h"
#include "worker/solvers/solver.h"

namespace qshard {
namespace {

using ::qshard::testing::CorrelatedActivations;
using ::qshard::testing::HessianOf;
using ::qshard::testing::OutputEnergy;
using ::qshard::testing::OutputError;
using ::qshard::testing::ReferenceGptq;
using ::qshard::testing::ReferenceGptqResult;
using ::testing::HasSubstr;

QuantizedLinear Solve(const std::string& method, const QuantSpec& spec, const Tensor& w,
                      std::vector<const HessianSum*> hessians, std::span<const float> column_scale = {},
                      const FixedGrids* fixed = nullptr) {
  auto solver = MakeSolver(method, spec);
  EXPECT_TRUE(solver.ok()) << solver.status();
  LayerProblem problem;
  problem.name = "test.layer";
  problem.weight = &w;
  problem.hessians = std::move(hessians);
  problem.column_scale = column_scale;
  problem.fixed_grids = fixed;
  auto result = (*solver)->Solve(problem);
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? *std::move(result) : QuantizedLinear();
}

// How far the optimized solver is from the float64 reference: codes can differ where a value
// sits within float32 noise of a rounding boundary (and then along the rest of that row).
struct Agreement {
  double code_mismatch;  // fraction of codes that differ
  double value_gap;      // ‖Ŵ − Ŵ_ref‖_F / ‖W‖_F
};

Agreement Compare(const QuantizedLinear& got, const ReferenceGptqResult& ref, const Tensor& w) {
  int64_t mismatched = 0;
  double gap = 0.0, norm = 0.0;
  for (int64_t i = 0; i < w.size(); ++i) {
    mismatched += got.weight.codes[i] != ref.codes[i];
    const double d = static_cast<double>(got.dequantized[i]) - ref.dequantized[i];
    gap += d * d;
    norm += static_cast<double>(w[i]) * w[i];
  }
  return {static_cast<double>(mismatched) / static_cast<double>(w.size()), std::sqrt(gap / norm)};
}

QuantSpec Spec(int bits, int group_size, bool act_order, bool static_groups = false, int block_size = 128) {
  QuantSpec spec;
  spec.bits = bits;
  spec.group_size = group_size;
  spec.act_order = act_order;
  spec.static_groups = static_groups;
  spec.block_size = block_size;
  return spec;
}

struct Config {
  const char* label;
  QuantSpec spec;
};

TEST(GptqTest, MatchesUnblockedFloat64ReferenceOnAwkwardShapes) {
  QuantSpec sym = Spec(2, 16, false, false, 128);
  sym.sym = true;
  QuantSpec mse = Spec(3, -1, true, false, 10);
  mse.mse_clip = true;
  const Config configs[] = {
      {"4-bit per channel, blocks of 16", Spec(4, -1, false, false, 16)},
      {"3-bit g24 act-order, groups straddling blocks of 32", Spec(3, 24, true, false, 32)},
      {"2-bit sym g16 inside blocks of 128", sym},
      {"4-bit static g20 + act-order, blocks of 16", Spec(4, 20, true, true, 16)},
      {"8-bit per channel act-order, blocks of 7", Spec(8, -1, true, false, 7)},
      {"3-bit mse per channel act-order, blocks of 10", mse},
      {"4-bit g200 > block 64", Spec(4, 200, false, false, 64)},
  };
  const int64_t out = 37, in = 83, tokens = 300;
  const Tensor w = testing::RandomWeight(out, in, 17);
  const std::vector<float> x = CorrelatedActivations(tokens, in, 3, 8.0f, 18);
  const HessianSum h = HessianOf(x, tokens, in);
  for (const Config& config : configs) {
    const QuantizedLinear got = Solve("gptq", config.spec, w, {&h});
    const ReferenceGptqResult ref = ReferenceGptq(w, h, config.spec);
    ASSERT_TRUE(ref.ok);
    const Agreement agreement = Compare(got, ref, w);
    EXPECT_LE(agreement.code_mismatch, 0.01) << config.label;
    EXPECT_LE(agreement.value_gap, 0.01) << config.label;
    EXPECT_EQ(got.weight.g_idx, ref.g_idx) << config.label;
    EXPECT_EQ(got.damp_retries, 0) << config.label;
    EXPECT_EQ(got.dequantized.values(), got.weight.Dequantized().values()) << config.label;
  }
}

TEST(GptqTest, BlockSizeOnlyChangesFloatRounding) {
  const int64_t out = 29, in = 70, tokens = 200;
  const Tensor w = testing::RandomWeight(out, in, 3);
  const std::vector<float> x = CorrelatedActivations(tokens, in, 2, 5.0f, 4);
  const HessianSum h = HessianOf(x, tokens, in);
  for (int group_size : {-1, 12, 32}) {
    const QuantizedLinear unblocked = Solve("gptq", Spec(3, group_size, true, false, 1), w, {&h});
    for (int block_size : {5, 16, 128}) {
      const QuantizedLinear blocked = Solve("gptq", Spec(3, group_size, true, false, block_size), w, {&h});
      int64_t mismatched = 0;
      for (int64_t i = 0; i < w.size(); ++i) mismatched += blocked.weight.codes[i] != unblocked.weight.codes[i];
      EXPECT_LE(mismatched, w.size() / 100) << "group " << group_size << " block " << block_size;
      EXPECT_EQ(blocked.weight.g_idx, unblocked.weight.g_idx);
    }
  }
}

class RealMatrixTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    std::string error;
    w_ = testing::LoadGpt2Matrix(GetParam(), testing::kRealMatrixSize, &error);
    ASSERT_TRUE(error.empty()) << error;
    x_ = CorrelatedActivations(tokens_, w_.dim(1), 8, 20.0f, 99);
    h_ = HessianOf(x_, tokens_, w_.dim(1));
  }

  double RelativeError(const QuantizedLinear& q) const {
    return OutputError(w_, q.dequantized, x_, tokens_) / OutputEnergy(w_, x_, tokens_);
  }

  const int64_t tokens_ = 1024;
  Tensor w_;
  std::vector<float> x_;
  HessianSum h_;
};

TEST_P(RealMatrixTest, MatchesUnblockedFloat64Reference) {
  for (const QuantSpec& spec : {Spec(4, -1, false), Spec(3, 128, true)}) {
    const QuantizedLinear got = Solve("gptq", spec, w_, {&h_});
    const ReferenceGptqResult ref = ReferenceGptq(w_, h_, spec);
    ASSERT_TRUE(ref.ok);
    const Agreement agreement = Compare(got, ref, w_);
    std::printf("[%s] %d-bit g%d: codes differing from the float64 reference %.4f%%, value gap %.2e\n",
                GetParam(), spec.bits, spec.group_size, 100 * agreement.code_mismatch, agreement.value_gap);
    EXPECT_LE(agreement.code_mismatch, 0.005);
    EXPECT_LE(agreement.value_gap, 0.01);
    EXPECT_EQ(got.weight.g_idx, ref.g_idx);
    // Same objective to within float noise.
    EXPECT_NEAR(RelativeError(got), OutputError(w_, ref.dequantized, x_, tokens_) / OutputEnergy(w_, x_, tokens_),
                0.01 * RelativeError(got));
  }
}

TEST_P(RealMatrixTest, BeatsRoundToNearest) {
  for (int bits : {2, 3, 4}) {
    for (int group_size : {-1, 128}) {
      const QuantSpec spec = Spec(bits, group_size, true);
      const QuantizedLinear rtn = Solve("rtn", spec, w_, {});
      const auto start = std::chrono::steady_clock::now();
      const QuantizedLinear gptq = Solve("gptq", spec, w_, {&h_});
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const double e_rtn = RelativeError(rtn), e_gptq = RelativeError(gptq);
      std::printf("[%s %lldx%lld] %d-bit g%d act-order: relative output error RTN %.4e GPTQ %.4e (x%.2f), "
                  "GPTQ solve %.3f s\n",
                  GetParam(), static_cast<long long>(w_.dim(0)), static_cast<long long>(w_.dim(1)), bits,
                  group_size, e_rtn, e_gptq, e_rtn / e_gptq, seconds);
      EXPECT_LT(e_gptq, e_rtn) << bits << " bits, group " << group_size;
    }
  }
}

TEST_P(RealMatrixTest, ActOrderHelpsWithOutlierChannels) {
  for (int bits : {3, 4}) {
    const double plain = RelativeError(Solve("gptq", Spec(bits, -1, false), w_, {&h_}));
    const double act_order = RelativeError(Solve("gptq", Spec(bits, -1, true), w_, {&h_}));
    std::printf("[%s] %d-bit: relative output error without act-order %.4e, with %.4e\n", GetParam(), bits,
                plain, act_order);
    EXPECT_LE(act_order, plain) << bits << " bits";
  }
}

TEST_P(RealMatrixTest, DequantizedWeightIsExactlyWhatTheCheckpointReproduces) {
  for (const QuantSpec& spec : {Spec(4, 128, true), Spec(3, -1, false), Spec(2, 64, true, true)}) {
    const QuantizedLinear q = Solve("gptq", spec, w_, {&h_});
    auto packed = PackGptq(q.weight);
    ASSERT_TRUE(packed.ok()) << packed.status();
    auto loaded = UnpackGptq(*packed);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_EQ(loaded->Dequantized().values(), q.dequantized.values()) << spec.bits << " bits";
  }
}

TEST_P(RealMatrixTest, ProxyErrorIsTheCalibrationOutputError) {
  const QuantizedLinear q = Solve("gptq", Spec(3, 128, true), w_, {&h_});
  const double measured = 2.0 * OutputError(w_, q.dequantized, x_, tokens_) / static_cast<double>(tokens_);
  EXPECT_NEAR(q.proxy_error, measured, 1e-3 * measured);
  const std::vector<const HessianSum*> hessians = {&h_};
  EXPECT_NEAR(ProxyError(w_, q.dequantized, hessians), measured, 1e-4 * measured);
}

INSTANTIATE_TEST_SUITE_P(Gpt2CProj, RealMatrixTest, ::testing::Values("0", "11"));

TEST(GptqTest, StaticGroupsKeepContiguousGroupsUnderActOrder) {
  const int64_t out = 24, in = 90, tokens = 256, group_size = 32;
  const Tensor w = testing::RandomWeight(out, in, 5);
  const std::vector<float> x = CorrelatedActivations(tokens, in, 4, 10.0f, 6);
  const HessianSum h = HessianOf(x, tokens, in);
  const QuantizedLinear q = Solve("gptq", Spec(4, group_size, true, true), w, {&h});
  EXPECT_EQ(q.weight.g_idx, ContiguousGroupIndex(in, group_size));
  // Static grids come from the weight before any update: the same as fitting W directly.
  std::vector<float> wt(in * out);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) wt[i * out + o] = w.at(o, i);
  std::vector<float> scales(3 * out);
  std::vector<int32_t> zeros(3 * out);
  FitGroupGrids(Spec(4, group_size, true).grid_options(), wt.data(), in, out, group_size, scales.data(),
                zeros.data(), out);
  EXPECT_EQ(q.weight.scales.values(), scales);
  EXPECT_EQ(q.weight.zeros, zeros);
}

TEST(GptqTest, ActOrderGroupsFollowDescendingHessianDiagonal) {
  const int64_t out = 16, in = 50, tokens = 128, group_size = 16;
  const Tensor w = testing::RandomWeight(out, in, 8);
  const std::vector<float> x = CorrelatedActivations(tokens, in, 5, 30.0f, 9);
  const HessianSum h = HessianOf(x, tokens, in);
  const QuantizedLinear q = Solve("gptq", Spec(4, group_size, true), w, {&h});
  std::vector<int64_t> order(in);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return h.sum[a * in + a] > h.sum[b * in + b]; });
  for (int64_t j = 0; j < in; ++j) EXPECT_EQ(q.weight.g_idx[order[j]], j / group_size) << j;
}

TEST(GptqTest, DeadInputsAreZeroedAndStillMatchTheReference) {
  const int64_t out = 20, in = 40, tokens = 160;
  const Tensor w = testing::RandomWeight(out, in, 10);
  std::vector<float> x = CorrelatedActivations(tokens, in, 0, 1.0f, 11);
  const std::vector<int64_t> dead = {0, 7, 8, 39};
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t c : dead) x[t * in + c] = 0.0f;
  const HessianSum h = HessianOf(x, tokens, in);
  for (const QuantSpec& spec : {Spec(4, -1, true), Spec(3, 8, false, true)}) {
    const QuantizedLinear q = Solve("gptq", spec, w, {&h});
    for (int64_t r = 0; r < out; ++r)
      for (int64_t c : dead) EXPECT_EQ(q.dequantized.at(r, c), 0.0f) << r << "," << c;
    const ReferenceGptqResult ref = ReferenceGptq(w, h, spec);
    ASSERT_TRUE(ref.ok);
    EXPECT_LE(Compare(q, ref, w).code_mismatch, 0.01);
    // Dead inputs cost nothing, so the objective is the output error on the calibration set.
    EXPECT_NEAR(q.proxy_error, 2.0 * OutputError(w, q.dequantized, x, tokens) / tokens, 1e-3 * q.proxy_error);
  }
}

// A Hessian with eigenvalues down to −0.05 · mean(diag): damp 0.01 fails, 0.1 succeeds.
HessianSum IndefiniteHessian(int64_t in, int64_t tokens, double shift) {
  const std::vector<float> x = CorrelatedActivations(tokens, in, 0, 1.0f, 12);  // tokens < in: singular
  HessianSum h = HessianOf(x, tokens, in);
  double mean = 0.0;
  for (int64_t i = 0; i < in; ++i) mean += h.sum[i * in + i] / static_cast<double>(in);
  for (int64_t i = 0; i < in; ++i) h.sum[i * in + i] -= shift * mean;
  return h;
}

TEST(GptqTest, IndefiniteHessianIsRescuedByRaisingDamping) {
  const int64_t out = 12, in = 48, tokens = 20;
  const Tensor w = testing::RandomWeight(out, in, 13);
  const HessianSum h = IndefiniteHessian(in, tokens, 0.05);
  const QuantSpec spec = Spec(4, -1, false);
  const QuantizedLinear q = Solve("gptq", spec, w, {&h});
  EXPECT_EQ(q.damp_retries, 1);
  EXPECT_DOUBLE_EQ(q.damp_used, 0.1);
  const ReferenceGptqResult ref = ReferenceGptq(w, h, spec);
  ASSERT_TRUE(ref.ok);
  EXPECT_DOUBLE_EQ(ref.damp, 0.1);
  EXPECT_LE(Compare(q, ref, w).code_mismatch, 0.01);

  // With no retries allowed the same problem is a clear error, not a crash.
  QuantSpec strict = spec;
  strict.max_damp_retries = 0;
  auto solver = MakeSolver("gptq", strict);
  ASSERT_TRUE(solver.ok());
  LayerProblem problem;
  problem.name = "blocks.3.fc2";
  problem.weight = &w;
  problem.hessians = {&h};
  const auto status = (*solver)->Solve(problem).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(status.message()), HasSubstr("blocks.3.fc2: hessian: not positive definite"));
}

TEST(GptqTest, RankDeficientHessianNeedsNoRetry) {
  const int64_t out = 12, in = 48, tokens = 20;  // fewer tokens than inputs
  const Tensor w = testing::RandomWeight(out, in, 14);
  const std::vector<float> x = CorrelatedActivations(tokens, in, 0, 1.0f, 15);
  const HessianSum h = HessianOf(x, tokens, in);
  const QuantizedLinear q = Solve("gptq", Spec(4, -1, false), w, {&h});
  EXPECT_EQ(q.damp_retries, 0);
  EXPECT_DOUBLE_EQ(q.damp_used, 0.01);
}

TEST(GptqTest, PerBlockHessiansSolveEachRowBlockOnItsOwn) {
  const int64_t out = 32, in = 40, tokens = 128;
  const Tensor w = testing::RandomWeight(out, in, 16);
  const HessianSum h0 = HessianOf(CorrelatedActivations(tokens, in, 2, 6.0f, 17), tokens, in);
  const HessianSum h1 = HessianOf(CorrelatedActivations(tokens, in, 2, 6.0f, 18), tokens, in);
  const QuantSpec spec = Spec(4, -1, true);
  const QuantizedLinear both = Solve("gptq", spec, w, {&h0, &h1});
  for (int half = 0; half < 2; ++half) {
    Tensor rows({out / 2, in});
    std::copy_n(w.row(half * out / 2), rows.size(), rows.data());
    const QuantizedLinear alone = Solve("gptq", spec, rows, {half == 0 ? &h0 : &h1});
    for (int64_t i = 0; i < rows.size(); ++i) {
      ASSERT_EQ(both.weight.codes[half * rows.size() + i], alone.weight.codes[i]) << half << " " << i;
      ASSERT_EQ(both.dequantized[half * rows.size() + i], alone.dequantized[i]);
    }
  }
  // Act-order with dynamic groups would need one g_idx per block: refused with a reason.
  auto solver = MakeSolver("gptq", Spec(4, 8, true));
  LayerProblem problem;
  problem.name = "v_proj";
  problem.weight = &w;
  problem.hessians = {&h0, &h1};
  EXPECT_THAT(std::string((*solver)->Solve(problem).status().message()), HasSubstr("v_proj: hessians"));
}

TEST(GptqTest, FixedGridsAndColumnMultipliers) {
  const int64_t out = 18, in = 45, tokens = 200, group_size = 15;
  const Tensor w = testing::RandomWeight(out, in, 19);
  const HessianSum h = HessianOf(CorrelatedActivations(tokens, in, 3, 8.0f, 20), tokens, in);
  std::mt19937 rng(21);
  std::uniform_real_distribution<float> spread(0.5f, 2.0f);
  std::vector<float> zeta(in);
  for (float& z : zeta) z = spread(rng);
  // Z-Fold style grids: fitted on W / ζ, then used with step α · ζ.
  std::vector<float> wt(in * out);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) wt[i * out + o] = w.at(o, i) / zeta[i];
  QuantSpec spec = Spec(3, group_size, true);
  FixedGrids grids{Tensor({3, out}), std::vector<int32_t>(3 * out)};
  FitGroupGrids(spec.grid_options(), wt.data(), in, out, group_size, grids.scales.data(), grids.zeros.data(), out);

  const QuantizedLinear q = Solve("gptq", spec, w, {&h}, zeta, &grids);
  EXPECT_EQ(q.weight.scales.values(), grids.scales.values());
  EXPECT_EQ(q.weight.g_idx, ContiguousGroupIndex(in, group_size));
  EXPECT_EQ(q.weight.column_scale, zeta);
  EXPECT_EQ(q.dequantized.values(), q.weight.Dequantized().values());
  const ReferenceGptqResult ref = ReferenceGptq(w, h, spec, zeta, &grids);
  ASSERT_TRUE(ref.ok);
  EXPECT_LE(Compare(q, ref, w).code_mismatch, 0.01);
  // ζ must be folded away before the GPTQ layout can hold the weight.
  EXPECT_THAT(std::string(PackGptq(q.weight).status().message()), HasSubstr("column_scale"));
}

TEST(GptqTest, RejectsMissingOrMismatchedStatistics) {
  const Tensor w = testing::RandomWeight(8, 16, 22);
  auto solver = MakeSolver("gptq", Spec(4, -1, false));
  ASSERT_TRUE(solver.ok());
  EXPECT_TRUE((*solver)->needs_hessian());
  LayerProblem problem;
  problem.name = "q_proj";
  problem.weight = &w;
  EXPECT_THAT(std::string((*solver)->Solve(problem).status().message()), HasSubstr("q_proj: hessian"));
  const HessianSum wrong(12);
  problem.hessians = {&wrong};
  EXPECT_THAT(std::string((*solver)->Solve(problem).status().message()), HasSubstr("dim 12 != in_features 16"));
  HessianSum empty(16);
  problem.hessians = {&empty};
  EXPECT_THAT(std::string((*solver)->Solve(problem).status().message()), HasSubstr("no calibration tokens"));
}

}  // namespace
}  // namespace qshard
