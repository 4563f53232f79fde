#include "remote/statistics_slices.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "remote/wire.h"

namespace qshard {
namespace {

// A value's float64 sums in their wire numbering: the inputs' sum, then the attention's values,
// queries and keys (none when it has no attention).
template <typename Statistics>
auto SumsOf(Statistics& statistics) {
  std::vector<decltype(&statistics.inputs)> sums = {&statistics.inputs};
  if (statistics.attention && !statistics.attention->values.empty())
    for (auto* list : {&statistics.attention->values, &statistics.attention->queries, &statistics.attention->keys})
      for (auto& sum : *list) sums.push_back(&sum);
  return sums;
}

// A sum's counts without its float64 values: tokens added, channel maxima taken.
void MergeCounts(HessianSum& into, const HessianSum& from) {
  into.tokens += from.tokens;
  for (size_t c = 0; c < into.abs_max.size(); ++c) into.abs_max[c] = std::max(into.abs_max[c], from.abs_max[c]);
}

// GroupStatistics::Merge on headers: the inputs' sum starts from zeros when `into` has none,
// absent attention is copied whole, present attention is added sum by sum.
absl::Status MergeHeaders(GroupStatistics& into, const GroupStatistics& from) {
  if (from.inputs.dim > 0) {
    if (into.inputs.dim == 0) {
      into.inputs.dim = from.inputs.dim;
      into.inputs.abs_max.assign(from.inputs.dim, 0.0f);
    }
    if (into.inputs.dim != from.inputs.dim)
      return absl::DataLossError(absl::StrCat("statistics of dims ", into.inputs.dim, " and ", from.inputs.dim));
    MergeCounts(into.inputs, from.inputs);
  }
  if (!from.attention || from.attention->values.empty()) return absl::OkStatus();
  if (!into.attention || into.attention->values.empty()) {
    into.attention = from.attention;
    return absl::OkStatus();
  }
  const auto into_sums = SumsOf(into);
  const auto from_sums = SumsOf(from);
  if (into_sums.size() != from_sums.size()) return absl::DataLossError("attention statistics of different shapes");
  for (size_t s = 1; s < into_sums.size(); ++s) {
    if (into_sums[s]->dim != from_sums[s]->dim) return absl::DataLossError("attention statistics of different shapes");
    MergeCounts(*into_sums[s], *from_sums[s]);
  }
  return absl::OkStatus();
}

// Row block [first_row, first_row + rows) of sum `sum`, as each node's slice of it.
struct Block {
  int sum = 0;
  int64_t first_row = 0;
  int64_t rows = 0;
};

absl::StatusOr<std::vector<double>> SliceValues(const v1::StatisticsPiece& piece, const Block& block, int64_t dim) {
  if (!piece.has_slice()) return absl::DataLossError("expected a slice of a sum");
  const v1::StatisticsSlice& slice = piece.slice();
  if (slice.sum() != block.sum || slice.first_row() != block.first_row || slice.rows() != block.rows)
    return absl::DataLossError(absl::StrCat("slice of sum ", slice.sum(), " rows [", slice.first_row(), ", +",
                                            slice.rows(), ") where sum ", block.sum, " rows [", block.first_row,
                                            ", +", block.rows, ") was due"));
  if (slice.sum_f64().size() != static_cast<size_t>(block.rows * dim) * sizeof(double))
    return absl::DataLossError(absl::StrCat("slice of sum ", block.sum, ": ", slice.sum_f64().size(), " bytes"));
  if (wire::Crc32(slice.sum_f64()) != slice.crc32())
    return absl::DataLossError(absl::StrCat("slice of sum ", block.sum, " at row ", block.first_row, ": CRC-32 mismatch"));
  std::vector<double> values(block.rows * dim);
  std::memcpy(values.data(), slice.sum_f64().data(), slice.sum_f64().size());
  return values;
}

}  // namespace

SliceWriter::SliceWriter(std::shared_ptr<const GroupStatistics> statistics, size_t max_slice_bytes)
    : statistics_(std::move(statistics)), max_slice_bytes_(max_slice_bytes) {}

bool SliceWriter::Next(v1::StatisticsPiece& piece) {
  piece.Clear();
  if (!header_sent_) {
    header_sent_ = true;
    wire::ToProto(*statistics_, *piece.mutable_header(), wire::Sums::kLeftOut);
    bytes_ += piece.ByteSizeLong();
    return true;
  }
  const auto sums = SumsOf(*statistics_);
  while (sum_ < sums.size() && row_ >= sums[sum_]->dim) {
    ++sum_;
    row_ = 0;
  }
  if (sum_ == sums.size()) return false;
  const HessianSum& sum = *sums[sum_];
  const int64_t rows_per_slice = std::max<int64_t>(1, max_slice_bytes_ / (sizeof(double) * sum.dim));
  const int64_t rows = std::min(rows_per_slice, sum.dim - row_);
  v1::StatisticsSlice& slice = *piece.mutable_slice();
  slice.set_sum(static_cast<int32_t>(sum_));
  slice.set_first_row(row_);
  slice.set_rows(rows);
  slice.set_sum_f64(reinterpret_cast<const char*>(sum.sum.data() + row_ * sum.dim), rows * sum.dim * sizeof(double));
  slice.set_crc32(wire::Crc32(slice.sum_f64()));
  row_ += rows;
  bytes_ += piece.ByteSizeLong();
  return true;
}

absl::StatusOr<GroupStatistics> ReduceSlices(const std::vector<SlicedNode>& nodes, int shards,
                                             std::optional<size_t>* failed) {
  std::vector<std::pair<int, int>> ranges;
  for (const SlicedNode& node : nodes) ranges.emplace_back(node.first_shard, node.shard_count);
  QSHARD_ASSIGN_OR_RETURN(const ShardTreePlan plan, PlanShardTree(ranges, shards));
  // Reads node i's next piece; false at the end of its stream.
  v1::StatisticsPiece piece;
  const auto read = [&](size_t i) -> absl::StatusOr<bool> {
    auto more = nodes[i].read(piece);
    if (!more.ok()) {
      if (failed != nullptr) *failed = i;
      return WithContext(more.status(), absl::StrCat("statistics of shards [", nodes[i].first_shard, ", ",
                                                     nodes[i].first_shard + nodes[i].shard_count, ")"));
    }
    return *more;
  };

  std::vector<GroupStatistics> headers(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) {
    QSHARD_ASSIGN_OR_RETURN(const bool more, read(i));
    if (!more || !piece.has_header()) return absl::DataLossError("a statistics stream must open with its header");
    QSHARD_ASSIGN_OR_RETURN(headers[i], wire::FromProto(piece.header(), wire::Sums::kLeftOut));
  }
  if (!plan.total) return GroupStatistics();
  std::vector<GroupStatistics> merged = headers;
  for (const ShardTreePlan::Step& step : plan.steps)
    QSHARD_RETURN_IF_ERROR(MergeHeaders(merged[step.into], merged[step.from]));
  GroupStatistics total = std::move(merged[*plan.total]);
  const auto total_sums = SumsOf(total);
  std::vector<std::vector<const HessianSum*>> node_sums;
  for (const GroupStatistics& header : headers) node_sums.push_back(SumsOf(header));
  const auto has = [&](size_t i, size_t s) { return s < node_sums[i].size() && node_sums[i][s]->dim > 0; };

  std::vector<std::vector<double>> slices(nodes.size());
  std::vector<bool> present(nodes.size());
  for (size_t s = 0; s < total_sums.size(); ++s) {
    HessianSum& sum = *total_sums[s];
    // Every row is written below from whole (mirrored) rows of the nodes: no zeroing first, no
    // mirroring after (the nodes were mirrored once on their workers, LocalWorker).
    sum.sum.resize(static_cast<size_t>(sum.dim * sum.dim));
    for (int64_t row = 0; row < sum.dim;) {
      Block block{static_cast<int>(s), row, 0};
      for (size_t i = 0; i < nodes.size(); ++i) {
        present[i] = has(i, s);
        if (!present[i]) continue;
        QSHARD_ASSIGN_OR_RETURN(const bool more, read(i));
        if (!more) return absl::DataLossError(absl::StrCat("a statistics stream ended inside sum ", s));
        if (block.rows == 0) {  // the first node's slicing is every node's
          block.rows = piece.has_slice() ? piece.slice().rows() : 0;
          if (block.rows < 1 || row + block.rows > sum.dim)
            return absl::DataLossError(absl::StrCat("slice of sum ", s, " with a bad row count"));
        }
        QSHARD_ASSIGN_OR_RETURN(slices[i], SliceValues(piece, block, sum.dim));
      }
      // The tree's additions, element by element (GroupStatistics::Merge): the inputs' sum of a
      // node without one starts from zeros, an attention sum is taken as it is.
      for (const ShardTreePlan::Step& step : plan.steps) {
        if (!present[step.from]) continue;
        std::vector<double>& into = slices[step.into];
        const std::vector<double>& from = slices[step.from];
        if (!present[step.into]) {
          present[step.into] = true;
          if (s > 0) {
            into = from;
            continue;
          }
          into.assign(from.size(), 0.0);
        }
        for (size_t k = 0; k < into.size(); ++k) into[k] += from[k];
      }
      if (!present[*plan.total]) return absl::InternalError("the tree's total lacks a sum its nodes have");
      std::memcpy(sum.sum.data() + row * sum.dim, slices[*plan.total].data(), slices[*plan.total].size() * sizeof(double));
      row += block.rows;
    }
  }
  for (size_t i = 0; i < nodes.size(); ++i) {
    QSHARD_ASSIGN_OR_RETURN(const bool more, read(i));
    if (more) return absl::DataLossError("a statistics stream carries more than its sums");
  }
  return total;
}

}  // namespace qshard
