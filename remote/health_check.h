// The client side of grpc.health.v1 Check, without generated stubs (Debian's gRPC ships no
// health.proto): the request and response are encoded by hand. `qshard health` (the
// Kubernetes exec probe) and the tests use it.
#pragma once

#include <chrono>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/channel.h"

namespace qshard {

// "SERVING" or "NOT_SERVING" for `service` ("" is the server as a whole); the failed call's
// status otherwise (NOT_FOUND: a service never set; UNAVAILABLE: nothing listening).
absl::StatusOr<std::string> CheckHealth(grpc::Channel& channel, const std::string& service,
                                        std::chrono::milliseconds timeout);

}  // namespace qshard
