// libFuzzer target for job-spec validation, the path every SubmitJob takes: arbitrary bytes
// parsed as a wire JobSpec, converted (remote/job_spec_proto.h) and checked by
// ValidateJobSpec must give a spec or an error, never a crash or a sanitizer report. A spec
// that passes must keep the promises SubmitJob and the journal rely on: its canonical bytes
// exist, read back to a spec that still validates, and are a fixed point (canonicalizing them
// again gives the same bytes), so a resubmission and a restarted coordinator see the same job.
#include <cstddef>
#include <cstdint>

#include "engine/job_spec.h"
#include "qshard.pb.h"
#include "remote/job_spec_proto.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  qshard::v1::JobSpec proto;
  if (!proto.ParseFromArray(data, static_cast<int>(size))) return 0;
  const absl::StatusOr<qshard::JobSpec> spec = qshard::JobSpecFromProto(proto);
  if (!spec.ok()) {
    if (spec.status().message().empty()) __builtin_trap();  // every error names its field
    return 0;
  }
  const absl::Status valid = qshard::ValidateJobSpec(*spec);
  if (!valid.ok()) {
    if (valid.message().empty()) __builtin_trap();
    return 0;
  }
  const absl::StatusOr<std::string> canonical = qshard::CanonicalSpecBytes(proto);
  if (!canonical.ok()) __builtin_trap();
  const absl::StatusOr<qshard::JobSpec> stored = qshard::JobSpecFromBytes(*canonical);
  if (!stored.ok() || !qshard::ValidateJobSpec(*stored).ok()) __builtin_trap();
  qshard::v1::JobSpec reread;
  if (!reread.ParseFromString(*canonical)) __builtin_trap();
  const absl::StatusOr<std::string> again = qshard::CanonicalSpecBytes(reread);
  if (!again.ok() || *again != *canonical) __builtin_trap();
  return 0;
}
