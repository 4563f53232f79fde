// The one conversion between the wire's JobSpec (proto/qshard.proto) and the engine's
// (engine/job_spec.h). It checks nothing beyond what the wire alone can get wrong (an unknown
// enum value): ValidateJobSpec stays the only validation. Proto zeros documented as "the
// default" become the engine's defaults, so a hand-written request may leave them out.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "engine/job_spec.h"
#include "qshard.pb.h"

namespace qshard {

absl::StatusOr<JobSpec> JobSpecFromProto(const v1::JobSpec& proto);

// Every field written explicitly; client_request_id is left empty.
v1::JobSpec JobSpecToProto(const JobSpec& spec);

// The spec's canonical bytes: defaults filled in and the request id cleared, so two requests
// that mean the same job compare equal (SubmitJob's idempotence) whatever zeros they left out.
absl::StatusOr<std::string> CanonicalSpecBytes(const v1::JobSpec& proto);

// The engine spec of stored canonical bytes (the journal's); DATA_LOSS when they do not parse.
absl::StatusOr<JobSpec> JobSpecFromBytes(const std::string& bytes);

}  // namespace qshard
