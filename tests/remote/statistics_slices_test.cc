// Statistics sliced for the data plane: no slice over its limit, and the tree sum of sliced
// nodes has exactly the bytes of the whole values reduced along the same tree.
#include "remote/statistics_slices.h"

#include <cstring>
#include <random>

#include "gtest/gtest.h"
#include "tests/remote/random_statistics.h"

namespace qshard {
namespace {

// A group's statistics with aespa's attention sums (awkward sizes), or none for an empty shard.
GroupStatistics RandomStatistics(std::mt19937& rng, bool empty = false) {
  return empty ? GroupStatistics() : testing::RandomAttentionStatistics(37, 5, rng);
}

// The pieces of `statistics`, cut at `max_slice_bytes`.
std::vector<v1::StatisticsPiece> Pieces(const GroupStatistics& statistics, size_t max_slice_bytes) {
  SliceWriter writer(std::make_shared<const GroupStatistics>(statistics), max_slice_bytes);
  std::vector<v1::StatisticsPiece> pieces;
  for (v1::StatisticsPiece piece; writer.Next(piece);) pieces.push_back(piece);
  return pieces;
}

PieceReader ReaderOf(std::vector<v1::StatisticsPiece> pieces) {
  auto at = std::make_shared<size_t>(0);
  auto held = std::make_shared<std::vector<v1::StatisticsPiece>>(std::move(pieces));
  return [at, held](v1::StatisticsPiece& piece) -> absl::StatusOr<bool> {
    if (*at == held->size()) return false;
    piece = (*held)[(*at)++];
    return true;
  };
}

bool SameBytes(const HessianSum& a, const HessianSum& b) {
  return a.dim == b.dim && a.tokens == b.tokens && a.abs_max == b.abs_max && a.sum.size() == b.sum.size() &&
         std::memcmp(a.sum.data(), b.sum.data(), a.sum.size() * sizeof(double)) == 0;
}

void ExpectSameBytes(const GroupStatistics& a, const GroupStatistics& b) {
  EXPECT_TRUE(SameBytes(a.inputs, b.inputs));
  ASSERT_EQ(a.attention.has_value(), b.attention.has_value());
  if (!a.attention) return;
  for (size_t h = 0; h < a.attention->values.size(); ++h) {
    EXPECT_TRUE(SameBytes(a.attention->values[h], b.attention->values[h])) << h;
    EXPECT_TRUE(SameBytes(a.attention->queries[h], b.attention->queries[h])) << h;
    EXPECT_TRUE(SameBytes(a.attention->keys[h], b.attention->keys[h])) << h;
  }
  EXPECT_EQ(a.attention->seq, b.attention->seq);
}

constexpr size_t kSmallSlice = 3 * 37 * sizeof(double) + 5;  // 3 rows of the inputs' sum

TEST(StatisticsSlicesTest, ManyBoundedSlicesReassembleExactly) {
  std::mt19937 rng(3);
  const GroupStatistics statistics = RandomStatistics(rng);
  const std::vector<v1::StatisticsPiece> pieces = Pieces(statistics, kSmallSlice);
  // The header, 13 slices of each 37-wide sum (3 rows each, 1 in the last), one per 5-wide sum.
  EXPECT_EQ(pieces.size(), 1 + 3 * 13 + 4);
  for (size_t i = 1; i < pieces.size(); ++i) {
    ASSERT_TRUE(pieces[i].has_slice());
    EXPECT_LE(pieces[i].slice().sum_f64().size(), kSmallSlice);
  }
  EXPECT_TRUE(pieces[0].header().inputs().sum_f64().empty());
  auto back = ReduceSlices({{0, 1, ReaderOf(pieces)}}, 1);
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSameBytes(*back, statistics);
}

// Two workers' tree nodes of six shards (one shard without windows), reduced slice by slice:
// the bytes of ReduceShardTree on the whole values.
TEST(StatisticsSlicesTest, SlicedNodesAddAlongTheTreeLikeWholeValues) {
  std::mt19937 rng(4);
  std::vector<ShardStatistics> per_shard;
  for (int s = 0; s < 6; ++s) per_shard.push_back({s, 1, {RandomStatistics(rng, /*empty=*/s == 3)}});
  std::vector<ShardStatistics> nodes;
  for (const std::vector<int>& held : {std::vector<int>{0, 1, 2}, std::vector<int>{3, 4, 5}}) {
    std::vector<ShardStatistics> mine;
    for (int s : held) mine.push_back(per_shard[s]);
    for (ShardStatistics& node : ReduceHeldShards(std::move(mine))) nodes.push_back(std::move(node));
  }
  ASSERT_EQ(nodes.size(), 4u);  // [0,2) [2,3) [3,4) [4,6)
  std::vector<SlicedNode> sliced;
  for (auto it = nodes.rbegin(); it != nodes.rend(); ++it)  // any order
    sliced.push_back({it->first_shard, it->shard_count, ReaderOf(Pieces(it->groups[0], kSmallSlice))});
  auto streamed = ReduceSlices(sliced, 6);
  ASSERT_TRUE(streamed.ok()) << streamed.status();
  auto whole = ReduceShardTree(nodes, 6, 1);
  ASSERT_TRUE(whole.ok()) << whole.status();
  ExpectSameBytes(*streamed, (*whole)[0]);
}

TEST(StatisticsSlicesTest, DamagedOrFailedStreamsAreRefusedNamingTheNode) {
  std::mt19937 rng(5);
  const GroupStatistics a = RandomStatistics(rng), b = RandomStatistics(rng);
  std::vector<v1::StatisticsPiece> damaged = Pieces(b, kSmallSlice);
  (*damaged[4].mutable_slice()->mutable_sum_f64())[7] ^= 1;
  std::optional<size_t> failed;
  auto result = ReduceSlices({{0, 1, ReaderOf(Pieces(a, kSmallSlice))}, {1, 1, ReaderOf(damaged)}}, 2, &failed);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(result.status().message().find("CRC-32"), std::string::npos) << result.status();

  PieceReader broken = [](v1::StatisticsPiece&) -> absl::StatusOr<bool> { return absl::UnavailableError("gone"); };
  result = ReduceSlices({{0, 1, ReaderOf(Pieces(a, kSmallSlice))}, {1, 1, broken}}, 2, &failed);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnavailable);
  ASSERT_TRUE(failed.has_value());
  EXPECT_EQ(*failed, 1u);
  EXPECT_NE(result.status().message().find("shards [1, 2)"), std::string::npos) << result.status();

  std::vector<v1::StatisticsPiece> truncated = Pieces(a, kSmallSlice);
  truncated.pop_back();
  EXPECT_EQ(ReduceSlices({{0, 1, ReaderOf(truncated)}}, 1).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(ReduceSlices({{0, 1, ReaderOf(Pieces(a, kSmallSlice))}}, 2).ok());  // shard 1 missing
}

}  // namespace
}  // namespace qshard
