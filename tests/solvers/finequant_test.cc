// FineQuant's per-matrix group size (worker/solvers/finequant.h): it refines where outlier
// input columns or scattered outlier weights make coarse groups collapse, and keeps the coarse
// grid for a well-behaved matrix and for outlier rows (each row has its own grid already).
#include "worker/solvers/finequant.h"

#include <cmath>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/solvers/test_data.h"

namespace qshard {
namespace {

using ::testing::ElementsAre;

// Uniform weights: a group's range does not shrink with its size, so no refinement can pay.
Tensor UniformWeight(int64_t out, int64_t in, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-0.05f, 0.05f);
  Tensor w({out, in});
  for (float& v : w.values()) v = uniform(rng);
  return w;
}

absl::StatusOr<FineQuantChoice> Choose(const Tensor& w, int bits, int group_size) {
  QuantSpec spec;
  spec.bits = bits;
  spec.group_size = group_size;
  LayerProblem problem;
  problem.name = "mlp.down_proj";
  problem.weight = &w;
  return ChooseFineQuantGroupSize(problem, spec);
}

TEST(FineQuantTest, CandidatesHalveFromTheCoarsestDownToTheFloor) {
  EXPECT_THAT(FineQuantCandidates(768, -1), ElementsAre(-1, 128, 64, 32));
  EXPECT_THAT(FineQuantCandidates(4096, 1024), ElementsAre(1024, 128, 64, 32));
  EXPECT_THAT(FineQuantCandidates(384, -1), ElementsAre(-1, 128, 64, 32));
  EXPECT_THAT(FineQuantCandidates(128, 64), ElementsAre(64, 32));
  EXPECT_THAT(FineQuantCandidates(128, 512), ElementsAre(512, 64, 32));  // wider than the matrix: per channel
  EXPECT_THAT(FineQuantCandidates(40, -1), ElementsAre(-1));
  EXPECT_THAT(FineQuantCandidates(256, 32), ElementsAre(32));
}

TEST(FineQuantTest, StoredBitsCountCodesScalesAndZeros) {
  EXPECT_DOUBLE_EQ(StoredBitsPerWeight(4, 128, 32), 4.0 + 4 * 20.0 / 128);
  EXPECT_DOUBLE_EQ(StoredBitsPerWeight(3, 384, -1), 3.0 + 19.0 / 384);
  EXPECT_DOUBLE_EQ(StoredBitsPerWeight(8, 100, 64), 8.0 + 2 * 24.0 / 100);  // a short last group counts whole
}

TEST(FineQuantTest, KeepsTheCoarseGridForAWellBehavedMatrix) {
  const Tensor w = UniformWeight(96, 512, 1);
  for (const int bits : {3, 4, 8}) {
    for (const int start : {-1, 128}) {
      auto choice = Choose(w, bits, start);
      ASSERT_TRUE(choice.ok()) << choice.status();
      EXPECT_EQ(choice->group_size, start) << bits << " bits from " << start;
    }
  }
}

TEST(FineQuantTest, RefinesAMatrixWithOutlierColumnsButNotOneWithOutlierRows) {
  const Tensor base = UniformWeight(96, 512, 2);
  Tensor columns = base, rows = base;
  for (const int64_t c : {7, 200, 333, 501})
    for (int64_t r = 0; r < 96; ++r) columns.at(r, c) *= 30.0f;
  for (const int64_t r : {3, 50, 90})
    for (int64_t c = 0; c < 512; ++c) rows.at(r, c) *= 30.0f;
  for (const int bits : {3, 4, 8}) {
    auto refined = Choose(columns, bits, -1);
    ASSERT_TRUE(refined.ok()) << refined.status();
    EXPECT_EQ(refined->group_size, kFineQuantMinGroupSize) << bits << " bits";
    // The rule held: the chosen size is the cheapest, and it cut the error by far more than
    // the extra bits alone would have.
    const GroupSizeCandidate& coarse = refined->candidates.front();
    const GroupSizeCandidate& fine = refined->candidates.back();
    EXPECT_LT(fine.cost, coarse.cost);
    EXPECT_LT(fine.relative_error, coarse.relative_error * std::pow(4.0, -(fine.bits_per_weight - coarse.bits_per_weight)));
    auto kept = Choose(rows, bits, -1);
    ASSERT_TRUE(kept.ok()) << kept.status();
    EXPECT_EQ(kept->group_size, -1) << bits << " bits";
  }
}

TEST(FineQuantTest, RefinesScatteredOutlierWeights) {
  Tensor w = UniformWeight(64, 256, 3);
  std::mt19937 rng(4);
  for (int i = 0; i < 40; ++i) w[rng() % w.size()] *= 40.0f;  // ~0.25 % of the weights
  auto choice = Choose(w, 4, -1);
  ASSERT_TRUE(choice.ok()) << choice.status();
  EXPECT_NE(choice->group_size, -1);
}

TEST(FineQuantTest, FinerGroupSizeComparesEffectiveWidths) {
  EXPECT_EQ(FinerGroupSize(-1, 64, 128), 64);
  EXPECT_EQ(FinerGroupSize(32, -1, 128), 32);
  EXPECT_EQ(FinerGroupSize(-1, 256, 128), -1);  // both one group: the first is kept
  EXPECT_EQ(FinerGroupSize(128, 64, 384), 64);
}

TEST(FineQuantTest, AnAllZeroMatrixKeepsTheCoarseGrid) {
  const Tensor w({16, 256});
  auto choice = Choose(w, 4, -1);
  ASSERT_TRUE(choice.ok()) << choice.status();
  EXPECT_EQ(choice->group_size, -1);
}

TEST(FineQuantTest, RejectsFixedGridsAndBadWeights) {
  const Tensor w = UniformWeight(8, 64, 6);
  QuantSpec spec;
  FixedGrids grids;
  LayerProblem problem;
  problem.name = "self_attn.q_proj";
  problem.weight = &w;
  problem.fixed_grids = &grids;
  auto fixed = ChooseFineQuantGroupSize(problem, spec);
  EXPECT_FALSE(fixed.ok());
  EXPECT_THAT(std::string(fixed.status().message()), ::testing::HasSubstr("self_attn.q_proj"));
  Tensor nan = w;
  nan[5] = std::nanf("");
  problem.fixed_grids = nullptr;
  problem.weight = &nan;
  EXPECT_FALSE(ChooseFineQuantGroupSize(problem, spec).ok());
}

}  // namespace
}  // namespace qshard
