// The one conversion between absl::Status (everything in qshard) and grpc::Status (the wire):
// the service answers with the code and message of the status its code produced, and the
// client commands turn a failed call back into an absl::Status.
#pragma once

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace qshard {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace qshard
