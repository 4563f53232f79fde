// The shard tree gives the same float64 bits however the shards are split among workers,
// including the non-contiguous holdings a worker has after adopting a lost peer's shards.
#include "engine/statistics_tree.h"

#include <random>

#include "gtest/gtest.h"

namespace qshard {
namespace {

// Shard s's statistics for two groups, with values of very different magnitudes so that the
// association of the additions shows in the bits.
ShardStatistics Leaf(int shard) {
  std::mt19937 rng(shard);
  std::lognormal_distribution<double> spread(0.0, 8.0);
  ShardStatistics leaf;
  leaf.first_shard = shard;
  for (int dim : {3, 5}) {
    GroupStatistics g;
    g.inputs = HessianSum(dim);
    g.inputs.tokens = 10 + shard;
    for (double& v : g.inputs.sum) v = spread(rng);
    leaf.groups.push_back(std::move(g));
  }
  return leaf;
}

std::vector<GroupStatistics> Reduce(const std::vector<std::vector<int>>& holdings, int shards) {
  std::vector<ShardStatistics> nodes;
  for (const std::vector<int>& held : holdings) {
    std::vector<ShardStatistics> leaves;
    for (int s : held) leaves.push_back(Leaf(s));
    for (ShardStatistics& node : ReduceHeldShards(std::move(leaves))) nodes.push_back(std::move(node));
  }
  auto total = ReduceShardTree(std::move(nodes), shards, 2);
  EXPECT_TRUE(total.ok()) << total.status();
  return total.ok() ? *total : std::vector<GroupStatistics>();
}

TEST(StatisticsTreeTest, SameBitsWhateverTheSplit) {
  for (int shards : {1, 5, 6, 8}) {
    std::vector<int> all;
    for (int s = 0; s < shards; ++s) all.push_back(s);
    const std::vector<GroupStatistics> one = Reduce({all}, shards);
    ASSERT_EQ(one.size(), 2u);
    std::vector<std::vector<int>> singles;
    for (int s : all) singles.push_back({s});
    std::vector<std::vector<int>> two_runs = {{}, {}};
    for (int s : all) two_runs[(s % 3 == 1) ? 1 : 0].push_back(s);  // non-contiguous holdings
    for (const auto& split : {singles, two_runs}) {
      const std::vector<GroupStatistics> other = Reduce(split, shards);
      ASSERT_EQ(other.size(), 2u);
      for (int g = 0; g < 2; ++g) {
        EXPECT_EQ(other[g].inputs.sum, one[g].inputs.sum) << shards << " shards";
        EXPECT_EQ(other[g].inputs.tokens, one[g].inputs.tokens);
      }
    }
  }
}

TEST(StatisticsTreeTest, TheAssociationIsTheTreeNotALeftFold) {
  // Over 4 shards the tree adds (s0 + s1) + (s2 + s3); with these magnitudes a left fold gives
  // other bits somewhere, which is why workers must not choose the association themselves.
  const std::vector<GroupStatistics> tree = Reduce({{0, 1, 2, 3}}, 4);
  GroupStatistics fold = Leaf(0).groups[0];
  for (int s = 1; s < 4; ++s) ASSERT_TRUE(fold.Merge(Leaf(s).groups[0]).ok());
  EXPECT_NE(fold.inputs.sum, tree[0].inputs.sum);
}

TEST(StatisticsTreeTest, AWorkspaceReusesTheAddedPartialsBuffersWithTheSameBits) {
  // Over 7 held shards the reducer adds 4 right-hand partials of each group into left ones; with
  // a workspace, whose partials are upper triangles, it adds those only and keeps the buffers
  // for later shards' sums instead of freeing them.
  std::vector<int> held = {0, 1, 2, 3, 4, 5, 6};
  ThreadPool threads(2);
  HessianWorkspace workspace{&threads, {}, {}};
  HeldShardReducer with(held, &workspace), without(held);
  for (int s : held) {
    with.Add(s, Leaf(s).groups);
    without.Add(s, Leaf(s).groups);
  }
  std::vector<ShardStatistics> a = with.Take(), b = without.Take();
  ASSERT_EQ(a.size(), b.size());
  for (size_t n = 0; n < a.size(); ++n)
    for (int g = 0; g < 2; ++g) {
      HessianSum& upper = a[n].groups[g].inputs;
      const HessianSum& full = b[n].groups[g].inputs;
      for (int64_t i = 0; i < upper.dim; ++i)
        for (int64_t j = i; j < upper.dim; ++j) EXPECT_EQ(upper.sum[i * upper.dim + j], full.sum[i * upper.dim + j]);
    }
  EXPECT_EQ(workspace.spare_sums.size(), 2u * 4u);  // (0+1), (2+3), (0-1 + 2-3), (4+5), per group
}

TEST(StatisticsTreeTest, MissingAndOverlappingShardsAreErrors) {
  std::vector<ShardStatistics> nodes = ReduceHeldShards({Leaf(0), Leaf(1)});
  EXPECT_FALSE(ReduceShardTree(nodes, 3, 2).ok());  // shard 2 missing
  std::vector<ShardStatistics> overlap = ReduceHeldShards({Leaf(0), Leaf(1)});
  overlap.push_back(Leaf(1));
  overlap.push_back(Leaf(2));
  EXPECT_FALSE(ReduceShardTree(overlap, 3, 2).ok());
}

}  // namespace
}  // namespace qshard
