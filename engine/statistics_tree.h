// The fixed order in which a job's partial statistics are added: a binary tree over its S
// calibration shards (leaves in shard order; node [k·2^j, (k+1)·2^j) ∩ [0, S) is left + right).
// Float64 addition is not associative, so the tree's shape, not the workers, decides the
// bytes. A worker sends the largest nodes that lie wholly in the shards it holds — one per
// group when it holds an aligned range, e.g. 1 of 8 shards' worth of traffic for 1 worker of 8
// shards — and the runner completes the tree from whatever nodes arrive.
#pragma once

#include <optional>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/worker_client.h"

namespace qshard {

// Statistics cross the network as bounded slices of their float64 sums' rows, never as one
// whole message (protobuf stops at 2 GiB; fc2's sum at OPT-175B is 19 GB): the most bytes of
// sums one slice carries (remote/statistics_slices.h), which the planner also counts.
constexpr size_t kMaxStatisticsSliceBytes = size_t{64} << 20;

// The largest tree nodes wholly inside `held` (ascending shard indices), as (first shard,
// shard count) in order: what a worker holding them sends per group.
std::vector<std::pair<int, int>> HeldTreeNodes(const std::vector<int>& held);

// Worker side: adds the statistics of the shards a worker holds into the largest tree nodes
// wholly inside them, as the shards finish (in ascending order), so at most log₂ S + 1 partial
// sums are alive at once.
class HeldShardReducer {
 public:
  // `held`: ascending shard indices. `workspace` (optional): the partials' input sums are its
  // upper-triangle sums (HessianWorkspace::NewSum), added as such on its threads, the caller
  // mirroring the nodes it takes; each right-hand partial's buffer goes back to it once added.
  explicit HeldShardReducer(const std::vector<int>& held, HessianWorkspace* workspace = nullptr);
  // The next held shard's statistics, one value per group.
  void Add(int shard, std::vector<GroupStatistics> groups);
  // The finished nodes, each the exact tree sum of its shards.
  std::vector<ShardStatistics> Take() { return std::move(done_); }

 private:
  std::vector<std::pair<int, int>> nodes_;  // (first shard, shard count), in order
  size_t next_node_ = 0;
  std::vector<ShardStatistics> pending_;    // complete subtrees of the node in progress
  std::vector<ShardStatistics> done_;
  HessianWorkspace* workspace_;
};

// Per-shard statistics (one per shard, any order) → the largest tree nodes wholly held.
std::vector<ShardStatistics> ReduceHeldShards(std::vector<ShardStatistics> per_shard);

// The tree's additions over `nodes` (first shard, shard count; any order) of a job of
// `shards` shards: each step adds node `from`'s running sum into node `into`'s (left + right),
// in the order the tree makes them; afterwards node `total` holds the whole sum (none: no shard
// at all). Element-wise sums follow the same steps slice by slice (remote/statistics_slices.h),
// so a sum reduced as it streams in has the bytes of one reduced whole. Fails on a shard no
// node covers, a node that does not fit the tree, or overlapping nodes.
struct ShardTreePlan {
  struct Step {
    size_t into = 0, from = 0;
  };
  std::vector<Step> steps;
  std::optional<size_t> total;
};
absl::StatusOr<ShardTreePlan> PlanShardTree(const std::vector<std::pair<int, int>>& nodes, int shards);

// Runner side: the nodes of every worker → one statistics value per group. Fails on a shard
// no node covers or a node that does not fit the tree.
absl::StatusOr<std::vector<GroupStatistics>> ReduceShardTree(std::vector<ShardStatistics> nodes, int shards,
                                                             size_t groups);

}  // namespace qshard
