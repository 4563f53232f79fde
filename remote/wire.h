// The wire form of what moves between the coordinator and its workers: statistics (exact
// float64 sums), group solutions (codes, grids, rewrites, reports), the shared part of a
// two-step solve and tasks, as the proto messages of proto/qshard.proto, and the cutting of a
// serialized message into CRC-checked chunks. Conversions are exact: a value read back is the value written, bit for bit.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/worker_client.h"
#include "qshard.pb.h"

namespace qshard::wire {

// kLeftOut: the data plane's header of a value (remote/statistics_slices.h), every float64 sum
// left empty (it follows in slices); read back, each HessianSum has its dim, tokens and channel
// maxima and an empty `sum`.
enum class Sums { kIncluded, kLeftOut };
void ToProto(const GroupStatistics& statistics, v1::GroupStatisticsData& out, Sums sums = Sums::kIncluded);
absl::StatusOr<GroupStatistics> FromProto(const v1::GroupStatisticsData& data, Sums sums = Sums::kIncluded);

void ToProto(const GroupSolution& solution, v1::GroupSolutionData& out);
absl::StatusOr<GroupSolution> FromProto(const v1::GroupSolutionData& data);

void ToProto(const SharedGroupPart& shared, v1::SharedGroupPartData& out);
absl::StatusOr<SharedGroupPart> FromProto(const v1::SharedGroupPartData& data);

void ToProto(const HeadRange& range, v1::HeadRangeData& out);
HeadRange FromProto(const v1::HeadRangeData& data);
void ToProto(const HeadsPart& part, v1::HeadsPartData& out);
absl::StatusOr<HeadsPart> FromProto(const v1::HeadsPartData& data);

// A task's outcome as carried in its result, and back.
void SetStatus(const absl::Status& status, v1::WorkerTaskResult& result);
absl::Status StatusOf(const v1::WorkerTaskResult& result);

// CRC-32 (zlib's) of `bytes`: the checksum of chunks, statistics slices and record files.
uint32_t Crc32(std::string_view bytes);

// Chunks of at most `chunk_bytes` of `message` serialized; the last carries its CRC-32.
// RESOURCE_EXHAUSTED for a message over protobuf's 2 GiB limit (which would serialize to nothing).
absl::StatusOr<std::vector<v1::Chunk>> Cut(const google::protobuf::Message& message, uint64_t message_id,
                                           size_t chunk_bytes);

// The kind of `task`: the name of its `body` field ("apply", "solve", ...), "empty" for none.
std::string TaskKind(const v1::WorkerTask& task);

// Collects the chunks of one message and parses it once the last chunk arrived.
class ChunkAssembler {
 public:
  // Adds a chunk; returns true when `chunk` completed a message, which is parsed into `out`.
  // Chunks of another message id than the one in progress, a bad CRC or an unparsable
  // message are errors naming the message id.
  absl::StatusOr<bool> Add(const v1::Chunk& chunk, google::protobuf::Message& out);

 private:
  uint64_t message_id_ = 0;
  std::string data_;
  bool in_progress_ = false;
};

}  // namespace qshard::wire
