// Statistics on the workers' data plane (proto StatisticsService): a value leaves as its header
// and then bounded row slices of its float64 sums, each with its own CRC-32, so no message
// carries a whole sum; the receiver adds the slices of several shard-tree nodes along the tree
// (engine/statistics_tree.h) as they arrive and stores each sum's rows straight into the total.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/statistics_tree.h"
#include "engine/worker_client.h"
#include "qshard.pb.h"

namespace qshard {

// The pieces of one value, made one at a time: a slice copies only its own rows.
class SliceWriter {
 public:
  explicit SliceWriter(std::shared_ptr<const GroupStatistics> statistics,
                       size_t max_slice_bytes = kMaxStatisticsSliceBytes);
  // The next piece (the header, then the sums' slices in order); false after the last.
  bool Next(v1::StatisticsPiece& piece);
  // Bytes of pieces made so far, as serialized.
  uint64_t bytes() const { return bytes_; }

 private:
  std::shared_ptr<const GroupStatistics> statistics_;
  size_t max_slice_bytes_;
  bool header_sent_ = false;
  size_t sum_ = 0;    // the sum being sliced
  int64_t row_ = 0;   // its next row
  uint64_t bytes_ = 0;
};

// One node's stream of pieces: true with the next piece, false once the stream ended cleanly.
using PieceReader = std::function<absl::StatusOr<bool>(v1::StatisticsPiece&)>;

struct SlicedNode {
  int first_shard = 0;
  int shard_count = 1;
  PieceReader read;
};

// The shard tree's sum of `nodes` (of a job of `shards` shards), read in lockstep: every node's
// header, then, sum by sum and row block by row block, one slice from each node that has the
// sum, added along the tree exactly as GroupStatistics::Merge adds whole values. Holds the total
// and one slice per node. When a node's stream fails, `failed` (if given) is set to its index.
absl::StatusOr<GroupStatistics> ReduceSlices(const std::vector<SlicedNode>& nodes, int shards,
                                             std::optional<size_t>* failed = nullptr);

}  // namespace qshard
