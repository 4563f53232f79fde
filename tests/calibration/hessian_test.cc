#include "worker/calibration/hessian.h"

#include <cmath>
#include <random>

#include "gtest/gtest.h"

namespace qshard {
namespace {

std::vector<float> RandomRows(int64_t rows, int64_t dim, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> x(rows * dim);
  for (float& v : x) v = normal(rng);
  return x;
}

TEST(HessianSumTest, MatchesFloat64ReferenceOnAwkwardSizes) {
  const int64_t dim = 37, rows = 53;
  const std::vector<float> x = RandomRows(rows, dim, 1);
  HessianSum h(dim);
  h.AddWindow(x.data(), rows);
  EXPECT_EQ(h.tokens, rows);
  for (int64_t i = 0; i < dim; ++i)
    for (int64_t j = 0; j < dim; ++j) {
      double expected = 0.0;
      for (int64_t t = 0; t < rows; ++t) expected += double(x[t * dim + i]) * x[t * dim + j];
      EXPECT_NEAR(h.sum[i * dim + j], expected, 1e-4 * (1.0 + std::abs(expected))) << i << "," << j;
    }
}

TEST(HessianSumTest, IsSymmetricAndNormalizesByTokens) {
  const int64_t dim = 19;
  const std::vector<float> x = RandomRows(40, dim, 2);
  HessianSum h(dim);
  h.AddWindow(x.data(), 25);
  h.AddWindow(x.data() + 25 * dim, 15);
  const std::vector<double> normalized = h.Normalized();
  for (int64_t i = 0; i < dim; ++i)
    for (int64_t j = 0; j < dim; ++j) {
      EXPECT_EQ(h.sum[i * dim + j], h.sum[j * dim + i]);
      EXPECT_DOUBLE_EQ(normalized[i * dim + j], 2.0 * h.sum[i * dim + j] / 40.0);
    }
}

TEST(HessianSumTest, MergingPartialsInWindowOrderEqualsOneAccumulator) {
  const int64_t dim = 23, seq = 11;
  const std::vector<float> x = RandomRows(2 * seq, dim, 3);
  HessianSum whole(dim), first(dim), second(dim);
  whole.AddWindow(x.data(), seq);
  whole.AddWindow(x.data() + seq * dim, seq);
  first.AddWindow(x.data(), seq);
  second.AddWindow(x.data() + seq * dim, seq);
  ASSERT_TRUE(first.Merge(second).ok());
  // 0 + a + b == (0 + a) + (0 + b) exactly: the partials are single windows.
  EXPECT_EQ(first.sum, whole.sum);
  EXPECT_EQ(first.tokens, whole.tokens);
  EXPECT_EQ(first.abs_max, whole.abs_max);
}

TEST(HessianSumTest, KeepsEachChannelsLargestMagnitudeAcrossWindowsAndMerges) {
  const int64_t dim = 13, rows = 29;
  std::vector<float> x = RandomRows(rows, dim, 4);
  x[17 * dim + 5] = -40.0f;  // a negative outlier in the second window
  HessianSum a(dim), b(dim);
  a.AddWindow(x.data(), 10);
  b.AddWindow(x.data() + 10 * dim, rows - 10);
  ASSERT_TRUE(a.Merge(b).ok());
  for (int64_t c = 0; c < dim; ++c) {
    float expected = 0.0f;
    for (int64_t t = 0; t < rows; ++t) expected = std::max(expected, std::fabs(x[t * dim + c]));
    EXPECT_EQ(a.abs_max[c], expected) << c;
  }
  EXPECT_EQ(a.abs_max[5], 40.0f);
}

TEST(HessianSumTest, ManyWindowsAtOnceEqualOneWindowAtATime) {
  // Wider than one 32-wide tile and not a multiple of it, with a short last window.
  const int64_t dim = 71, window = 9, rows = 4 * window + 5;
  const std::vector<float> x = RandomRows(rows, dim, 5);
  HessianSum batched(dim), single(dim);
  batched.AddWindows(x.data(), rows, window);
  for (int64_t t = 0; t < rows; t += window) single.AddWindow(x.data() + t * dim, std::min(window, rows - t));
  EXPECT_EQ(batched.sum, single.sum);
  EXPECT_EQ(batched.tokens, single.tokens);
  EXPECT_EQ(batched.abs_max, single.abs_max);
  for (int64_t i = 0; i < dim; ++i)
    for (int64_t j = 0; j < i; ++j) ASSERT_EQ(batched.sum[i * dim + j], batched.sum[j * dim + i]) << i << "," << j;
}

TEST(HessianWorkspaceTest, ARecycledBufferStartsEmptyAndSumsAsAFreshOne) {
  const int64_t dim = 45, window = 7, rows = 3 * window;
  const std::vector<float> x = RandomRows(rows, dim, 6);
  ThreadPool threads(3);
  HessianWorkspace workspace{&threads, {}, {}};
  HessianSum used = workspace.NewSum(dim);
  used.AddWindowsToUpper(x.data(), rows, window, workspace);
  const double* buffer = used.sum.data();
  workspace.Recycle(std::move(used));
  workspace.Recycle(HessianSum(dim + 1));  // another size: kept, but not handed out for dim

  HessianSum reused = workspace.NewSum(dim);
  EXPECT_EQ(reused.sum.data(), buffer);  // no fresh dim² buffer to fault in
  for (int64_t i = 0; i < dim; ++i)  // the upper triangle; the lower one is written by MirrorUpper
    for (int64_t j = i; j < dim; ++j) ASSERT_EQ(reused.sum[i * dim + j], 0.0) << i << "," << j;
  EXPECT_EQ(reused.abs_max, std::vector<float>(dim, 0.0f));
  EXPECT_EQ(reused.tokens, 0);
  ASSERT_EQ(workspace.spare_sums.size(), 1u);
  EXPECT_EQ(workspace.spare_sums[0].size(), size_t((dim + 1) * (dim + 1)));

  const std::vector<float> y = RandomRows(2 * window, dim, 7);
  reused.AddWindowsToUpper(y.data(), 2 * window, window, workspace);
  reused.MirrorUpper(&threads);
  HessianSum fresh(dim);
  fresh.AddWindows(y.data(), 2 * window, window);
  EXPECT_EQ(reused.sum, fresh.sum);
  EXPECT_EQ(reused.abs_max, fresh.abs_max);
  EXPECT_EQ(reused.tokens, fresh.tokens);
  HessianSum another = workspace.NewSum(dim);  // none spare: a fresh buffer, its upper triangle zeroed
  ASSERT_EQ(another.sum.size(), size_t(dim * dim));
  for (int64_t i = 0; i < dim; ++i)
    for (int64_t j = i; j < dim; ++j) ASSERT_EQ(another.sum[i * dim + j], 0.0) << i << "," << j;
}

TEST(HessianSumTest, MergingUpperTrianglesThenMirroringEqualsMergingFullSums) {
  const int64_t dim = 37, window = 6;
  const std::vector<float> x = RandomRows(4 * window, dim, 8);
  HessianWorkspace workspace;
  HessianSum left = workspace.NewSum(dim), right = workspace.NewSum(dim);
  left.AddWindowsToUpper(x.data(), 2 * window, window, workspace);
  right.AddWindowsToUpper(x.data() + 2 * window * dim, 2 * window, window, workspace);
  ASSERT_TRUE(left.Merge(right, nullptr, /*upper_only=*/true).ok());
  left.MirrorUpper();
  HessianSum full_left(dim), full_right(dim);
  full_left.AddWindows(x.data(), 2 * window, window);
  full_right.AddWindows(x.data() + 2 * window * dim, 2 * window, window);
  ASSERT_TRUE(full_left.Merge(full_right).ok());
  EXPECT_EQ(left.sum, full_left.sum);
  EXPECT_EQ(left.tokens, full_left.tokens);
}

TEST(HessianSumTest, MergeRejectsMismatchedDims) {
  HessianSum a(3), b(4);
  const absl::Status status = a.Merge(b);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("dims 3 and 4"), std::string::npos);
}

}  // namespace
}  // namespace qshard
