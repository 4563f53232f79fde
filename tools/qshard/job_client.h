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
#include "remote/transport_security.h"

namespace qshard::cli {

struct ClientFlags {
  std::string coordinator;
  bool json = false;
  double reconnect_seconds = 60;  // how long a follower waits for a coordinator that went away
  TlsFiles tls;
  bool insecure = false;
  std::string token_file;
};

// The coordinator's JobService and the bearer token every call to it carries.
struct JobConnection {
  std::unique_ptr<v1::JobService::Stub> stub;
  std::string token;  // empty: none

  // Puts the token (if any) on a call's context.
  void Authorize(grpc::ClientContext& context) const;
};

void AddClientFlags(CLI::App& app, ClientFlags& flags);
// TLS and the token as the flags say; plaintext only to a loopback coordinator unless --insecure.
absl::StatusOr<JobConnection> ConnectToCoordinator(const ClientFlags& flags);

nlohmann::json JobStatusJson(const v1::JobStatus& status);
// Prints one status on stdout: a JSON object with --json, else one readable line.
void PrintJobStatus(const v1::JobStatus& status, bool json);

// Streams the job's states (one line each on stderr) until it is final and returns the final
// status. When the stream breaks (the coordinator restarted), it reconnects for up to
// --reconnect-seconds.
absl::StatusOr<v1::JobStatus> FollowJob(const JobConnection& connection, const std::string& job_id,
                                        const ClientFlags& flags);

// OK for SUCCEEDED; otherwise an error naming the job, its state and its error.
absl::Status JobOutcome(const v1::JobStatus& status);

}  // namespace qshard::cli
