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
absl::StatusOr<Node> Add(Node left, const Node& right) {
  if (left.size() != right.size()) return absl::InternalError("partial statistics for different groups");
  for (size_t g = 0; g < left.size(); ++g) QSHARD_RETURN_IF_ERROR(left[g].Merge(right[g]));
  return left;
}

// The tree sum of the `size` (a power of two) leaves from `first`, all present in `leaves`.
Node HeldNodeSum(const std::map<int, Node>& leaves, int first, int size) {
  if (size == 1) return leaves.at(first);
  return *Add(HeldNodeSum(leaves, first, size / 2), HeldNodeSum(leaves, first + size / 2, size / 2));
}

class TreeReduction {
 public:
  TreeReduction(std::map<std::pair<int, int>, Node> nodes, int shards) : nodes_(std::move(nodes)), shards_(shards) {}

  // The sum of the subtree of `size` leaves from `first`, clipped to the shards; none when
  // it lies past the last shard.
  absl::StatusOr<std::optional<Node>> Total(int first, int size) {
    if (first >= shards_) return std::optional<Node>();
    auto it = nodes_.find({first, std::min(size, shards_ - first)});
    if (it != nodes_.end()) {
      ++used_;
      return std::optional<Node>(std::move(it->second));
    }
    if (size == 1) return absl::InternalError(absl::StrCat("no statistics for shard ", first));
    QSHARD_ASSIGN_OR_RETURN(std::optional<Node> left, Total(first, size / 2));
    QSHARD_ASSIGN_OR_RETURN(std::optional<Node> right, Total(first + size / 2, size / 2));
    if (!right) return left;
    QSHARD_ASSIGN_OR_RETURN(Node sum, Add(std::move(*left), *right));
    return std::optional<Node>(std::move(sum));
  }
  size_t used() const { return used_; }

 private:
  std::map<std::pair<int, int>, Node> nodes_;
  int shards_;
  size_t used_ = 0;
};

}  // namespace

std::vector<ShardStatistics> ReduceHeldShards(std::vector<ShardStatistics> per_shard) {
  std::map<int, Node> leaves;
  for (ShardStatistics& s : per_shard) leaves[s.first_shard] = std::move(s.groups);
  std::vector<ShardStatistics> nodes;
  for (auto it = leaves.begin(); it != leaves.end();) {
    int end = it->first;  // the contiguous run [begin, end) of held shards
    const int begin = it->first;
    while (leaves.count(end)) ++end;
    for (int first = begin; first < end;) {
      int size = 1;
      while (first % (2 * size) == 0 && first + 2 * size <= end) size *= 2;
      nodes.push_back({first, size, HeldNodeSum(leaves, first, size)});
      first += size;
    }
    it = leaves.find(end);
    if (it == leaves.end()) it = leaves.upper_bound(end);
  }
  return nodes;
}

absl::StatusOr<std::vector<GroupStatistics>> ReduceShardTree(std::vector<ShardStatistics> nodes, int shards,
                                                             size_t groups) {
  const size_t received = nodes.size();
  std::map<std::pair<int, int>, Node> by_range;
  for (ShardStatistics& node : nodes) {
    if (node.first_shard < 0 || node.shard_count < 1 || node.first_shard + node.shard_count > shards ||
        node.groups.size() != groups || !by_range.emplace(std::pair(node.first_shard, node.shard_count),
                                                          std::move(node.groups)).second)
      return absl::InternalError(absl::StrCat("statistics of shards [", node.first_shard, ", ",
                                              node.first_shard + node.shard_count, ") arrived malformed or twice"));
  }
  int leaves = 1;
  while (leaves < shards) leaves *= 2;
  TreeReduction tree(std::move(by_range), shards);
  QSHARD_ASSIGN_OR_RETURN(std::optional<Node> total, tree.Total(0, leaves));
  if (tree.used() != received) return absl::InternalError("statistics arrived for overlapping shard ranges");
  if (!total) return std::vector<GroupStatistics>(groups);
  return std::move(*total);
}

}  // namespace qshard
