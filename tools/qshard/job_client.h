// The client side of the coordinator's JobService for `qshard submit`, `jobs`, `watch` and
// `cancel`: the shared --coordinator/--json flags, the stub, how a job status prints, and
// following a job to its end across coordinator restarts.
#pragma once

#include <memory>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "qshard.grpc.pb.h"

namespace qshard::cli {

struct ClientFlags {
  std::string coordinator;
  bool json = false;
  double reconnect_seconds = 60;  // how long a follower waits for a coordinator that went away
};

void AddClientFlags(CLI::App& app, ClientFlags& flags);
std::unique_ptr<v1::JobService::Stub> ConnectToCoordinator(const ClientFlags& flags);

nlohmann::json JobStatusJson(const v1::JobStatus& status);
// Prints one status on stdout: a JSON object with --json, else one readable line.
void PrintJobStatus(const v1::JobStatus& status, bool json);

// Streams the job's states (one line each on stderr) until it is final and returns the final
// status. When the stream breaks (the coordinator restarted), it reconnects for up to
// --reconnect-seconds.
absl::StatusOr<v1::JobStatus> FollowJob(v1::JobService::Stub& stub, const std::string& job_id,
                                        const ClientFlags& flags);

// OK for SUCCEEDED; otherwise an error naming the job, its state and its error.
absl::Status JobOutcome(const v1::JobStatus& status);

}  // namespace qshard::cli
