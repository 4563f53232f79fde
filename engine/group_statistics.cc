#include "core/status.h"
#include "engine/worker_client.h"

namespace qshard {

// A shard without windows contributes empty sums (dimension 0): they add nothing.
absl::Status GroupStatistics::Merge(const GroupStatistics& other, ThreadPool* pool, bool upper_only) {
  if (other.inputs.dim > 0) {
    if (inputs.dim == 0) inputs = HessianSum(other.inputs.dim);
    QSHARD_RETURN_IF_ERROR(inputs.Merge(other.inputs, pool, upper_only));
  }
  if (other.attention && !other.attention->values.empty()) {
    if (!attention || attention->values.empty()) {
      attention = other.attention;
    } else {
      QSHARD_RETURN_IF_ERROR(attention->Merge(*other.attention));
    }
  }
  return absl::OkStatus();
}

}  // namespace qshard
