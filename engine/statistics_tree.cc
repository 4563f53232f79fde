#include "engine/statistics_tree.h"

#include <algorithm>
#include <map>
#include <optional>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace qshard {
namespace {

using Node = std::vector<GroupStatistics>;  // one value per group

// left + right, group by group: the one addition of the tree.
absl::StatusOr<Node> Sum(Node left, const Node& right, ThreadPool* pool = nullptr, bool upper_only = false) {
  if (left.size() != right.size()) return absl::InternalError("partial statistics for different groups");
  for (size_t g = 0; g < left.size(); ++g) QSHARD_RETURN_IF_ERROR(left[g].Merge(right[g], pool, upper_only));
  return left;
}

class TreePlanner {
 public:
  TreePlanner(std::map<std::pair<int, int>, size_t> nodes, int shards) : nodes_(std::move(nodes)), shards_(shards) {}

  // The node that ends up holding the sum of the subtree of `size` leaves from `first`,
  // clipped to the shards; none when it lies past the last shard.
  absl::StatusOr<std::optional<size_t>> Total(int first, int size) {
    if (first >= shards_) return std::optional<size_t>();
    auto it = nodes_.find({first, std::min(size, shards_ - first)});
    if (it != nodes_.end()) {
      ++used_;
      return std::optional<size_t>(it->second);
    }
    if (size == 1) return absl::InternalError(absl::StrCat("no statistics for shard ", first));
    QSHARD_ASSIGN_OR_RETURN(std::optional<size_t> left, Total(first, size / 2));
    QSHARD_ASSIGN_OR_RETURN(std::optional<size_t> right, Total(first + size / 2, size / 2));
    if (right) plan_.steps.push_back({*left, *right});
    return left;
  }
  size_t used() const { return used_; }
  ShardTreePlan& plan() { return plan_; }

 private:
  std::map<std::pair<int, int>, size_t> nodes_;  // (first, count) → index
  int shards_;
  size_t used_ = 0;
  ShardTreePlan plan_;
};

}  // namespace

std::vector<std::pair<int, int>> HeldTreeNodes(const std::vector<int>& held) {
  // Each contiguous run of held shards, cut from the left into the largest aligned nodes.
  std::vector<std::pair<int, int>> nodes;
  for (size_t i = 0; i < held.size();) {
    size_t j = i + 1;
    while (j < held.size() && held[j] == held[j - 1] + 1) ++j;
    const int end = held[j - 1] + 1;
    for (int first = held[i]; first < end;) {
      int size = 1;
      while (first % (2 * size) == 0 && first + 2 * size <= end) size *= 2;
      nodes.emplace_back(first, size);
      first += size;
    }
    i = j;
  }
  return nodes;
}

HeldShardReducer::HeldShardReducer(const std::vector<int>& held, HessianWorkspace* workspace)
    : nodes_(HeldTreeNodes(held)), workspace_(workspace) {}

void HeldShardReducer::Add(int shard, std::vector<GroupStatistics> groups) {
  pending_.push_back({shard, 1, std::move(groups)});
  // Two neighbouring subtrees of one size, the left one aligned to twice it, are siblings:
  // their sum (left + right) is their parent, exactly as the tree defines it.
  while (pending_.size() >= 2) {
    ShardStatistics& left = pending_[pending_.size() - 2];
    ShardStatistics& right = pending_.back();
    if (left.shard_count != right.shard_count || left.first_shard % (2 * left.shard_count) != 0) break;
    left.groups = workspace_ != nullptr ? *Sum(std::move(left.groups), right.groups, workspace_->pool, /*upper_only=*/true)
                                        : *Sum(std::move(left.groups), right.groups);
    left.shard_count *= 2;
    if (workspace_ != nullptr)
      for (GroupStatistics& group : right.groups) workspace_->Recycle(std::move(group.inputs));
    pending_.pop_back();
  }
  if (next_node_ < nodes_.size() && pending_.size() == 1 &&
      std::pair(pending_[0].first_shard, pending_[0].shard_count) == nodes_[next_node_]) {
    done_.push_back(std::move(pending_[0]));
    pending_.clear();
    ++next_node_;
  }
}

std::vector<ShardStatistics> ReduceHeldShards(std::vector<ShardStatistics> per_shard) {
  std::sort(per_shard.begin(), per_shard.end(),
            [](const ShardStatistics& a, const ShardStatistics& b) { return a.first_shard < b.first_shard; });
  std::vector<int> held;
  for (const ShardStatistics& s : per_shard) held.push_back(s.first_shard);
  HeldShardReducer reducer(held);
  for (ShardStatistics& s : per_shard) reducer.Add(s.first_shard, std::move(s.groups));
  return reducer.Take();
}

absl::StatusOr<ShardTreePlan> PlanShardTree(const std::vector<std::pair<int, int>>& nodes, int shards) {
  std::map<std::pair<int, int>, size_t> by_range;
  for (size_t i = 0; i < nodes.size(); ++i) {
    const auto [first, count] = nodes[i];
    if (first < 0 || count < 1 || first + count > shards || !by_range.emplace(nodes[i], i).second)
      return absl::InternalError(
          absl::StrCat("statistics of shards [", first, ", ", first + count, ") arrived malformed or twice"));
  }
  int leaves = 1;
  while (leaves < shards) leaves *= 2;
  TreePlanner planner(std::move(by_range), shards);
  QSHARD_ASSIGN_OR_RETURN(planner.plan().total, planner.Total(0, leaves));
  if (planner.used() != nodes.size()) return absl::InternalError("statistics arrived for overlapping shard ranges");
  return std::move(planner.plan());
}

absl::StatusOr<std::vector<GroupStatistics>> ReduceShardTree(std::vector<ShardStatistics> nodes, int shards,
                                                             size_t groups) {
  std::vector<std::pair<int, int>> ranges;
  for (const ShardStatistics& node : nodes) {
    if (node.groups.size() != groups)
      return absl::InternalError(absl::StrCat("statistics of shards [", node.first_shard, ", ",
                                              node.first_shard + node.shard_count, ") arrived malformed or twice"));
    ranges.emplace_back(node.first_shard, node.shard_count);
  }
  QSHARD_ASSIGN_OR_RETURN(const ShardTreePlan plan, PlanShardTree(ranges, shards));
  for (const ShardTreePlan::Step& step : plan.steps) {
    QSHARD_ASSIGN_OR_RETURN(nodes[step.into].groups, Sum(std::move(nodes[step.into].groups), nodes[step.from].groups));
    nodes[step.from].groups.clear();  // free the added partial
  }
  if (!plan.total) return std::vector<GroupStatistics>(groups);
  return std::move(nodes[*plan.total].groups);
}

}  // namespace qshard
