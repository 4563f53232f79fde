#include "tools/qshard/job_client.h"

#include <chrono>
#include <iostream>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "coordinator/client_access.h"
#include "coordinator/grpc_status.h"
#include "coordinator/job_state.h"
#include "core/status.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "tools/qshard/command.h"
#include "tools/qshard/security_flags.h"

namespace qshard::cli {
namespace {

using Clock = std::chrono::system_clock;

// "solving", ... from JOB_PHASE_SOLVING.
std::string PhaseName(v1::JobPhase phase) {
  return absl::AsciiStrToLower(absl::StripPrefix(v1::JobPhase_Name(phase), "JOB_PHASE_"));
}

// "solving self_attn.q_proj,self_attn.k_proj of layer 3" (1-based, as the engine's log), or
// after the last layer "writing the checkpoint", "validating the checkpoint".
std::string ModuleText(const v1::JobModule& m) {
  if (m.phase() == v1::JOB_PHASE_WRITING || m.phase() == v1::JOB_PHASE_VALIDATING)
    return absl::StrCat(PhaseName(m.phase()), " the checkpoint");
  return absl::StrCat(PhaseName(m.phase()), m.linears().empty() ? "" : " ", absl::StrJoin(m.linears(), ","),
                      m.linears().empty() ? " layer " : " of layer ", m.layer() + 1);
}

std::string StatusLine(const v1::JobStatus& s) {
  std::string line = absl::StrCat(s.job_id(), " ", JobStateName(s.state()));
  if (s.layers_total() > 0) absl::StrAppend(&line, " layer ", s.layers_done(), "/", s.layers_total());
  if (s.seconds() > 0) absl::StrAppend(&line, absl::StrFormat(" %.1f s", s.seconds()));
  if (s.eta_seconds() > 0) absl::StrAppend(&line, absl::StrFormat(" eta %.1f s", s.eta_seconds()));
  if (s.has_module()) absl::StrAppend(&line, ": ", ModuleText(s.module()));
  if (!s.error().empty()) absl::StrAppend(&line, ": ", s.error());
  return line;
}

// The job's device plan lines (CUDA workers, once known), under its status line.
void PrintDevicePlan(const v1::JobStatus& status, std::ostream& out) {
  for (const std::string& line : status.device_plan()) out << "  " << line << std::endl;
}

bool Retryable(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAVAILABLE || status.error_code() == grpc::StatusCode::CANCELLED ||
         status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
}

}  // namespace

void AddClientFlags(CLI::App& app, ClientFlags& flags) {
  app.add_option("--coordinator", flags.coordinator, "The coordinator's address, host:port")->required();
  app.add_flag("--json", flags.json, "Print results as JSON objects, one per line");
  AddSecurityFlags(app, TlsRole::kClient, flags.tls, flags.insecure);
  app.add_option("--token-file", flags.token_file,
                 "File whose first token (one per line, '#' comments) is sent as the bearer token")
      ->check(CLI::ExistingFile);
}

void JobConnection::Authorize(grpc::ClientContext& context) const {
  if (!token.empty()) context.AddMetadata(kAuthorizationKey, kBearerPrefix + token);
}

absl::StatusOr<JobConnection> ConnectToCoordinator(const ClientFlags& flags) {
  const auto log = [](const std::string& line) { std::cerr << line << std::endl; };
  QSHARD_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> credentials,
                          MakeChannelCredentials(flags.coordinator, flags.tls, flags.insecure, log));
  JobConnection connection;
  connection.stub = v1::JobService::NewStub(grpc::CreateChannel(flags.coordinator, credentials));
  if (!flags.token_file.empty()) {
    QSHARD_ASSIGN_OR_RETURN(std::vector<std::string> tokens, ReadTokenFile(flags.token_file, "--token-file"));
    connection.token = tokens.front();
  }
  return connection;
}

nlohmann::json JobStatusJson(const v1::JobStatus& s) {
  nlohmann::json json = {{"job_id", s.job_id()},
                         {"state", JobStateName(s.state())},
                         {"layers_done", s.layers_done()},
                         {"layers_total", s.layers_total()},
                         {"seconds", s.seconds()},
                         {"eta_seconds", s.eta_seconds()},
                         {"client_request_id", s.client_request_id()},
                         {"created_unix_ms", s.created_unix_ms()}};
  if (!s.error().empty()) json["error"] = s.error();
  if (s.device_plan_size() > 0)
    json["device_plan"] = std::vector<std::string>(s.device_plan().begin(), s.device_plan().end());
  if (s.has_module())
    json["module"] = {{"layer", s.module().layer()},
                      {"linears", std::vector<std::string>(s.module().linears().begin(), s.module().linears().end())},
                      {"phase", PhaseName(s.module().phase())}};
  return json;
}

void PrintJobStatus(const v1::JobStatus& status, bool json) {
  if (json) {
    PrintJson(JobStatusJson(status));
  } else {
    std::cout << StatusLine(status) << std::endl;
    PrintDevicePlan(status, std::cout);
  }
}

absl::StatusOr<v1::JobStatus> FollowJob(const JobConnection& connection, const std::string& job_id,
                                        const ClientFlags& flags) {
  const auto patience =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(flags.reconnect_seconds));
  auto give_up = Clock::now() + patience;
  v1::GetJobRequest request;
  request.set_job_id(job_id);
  std::vector<std::string> plan_shown;  // while it runs (again after a restart's resume if it changed)
  while (true) {
    // A restarting coordinator is waited for (up to the patience left), not failed on.
    grpc::ClientContext probe;
    probe.set_wait_for_ready(true);
    probe.set_deadline(give_up);
    connection.Authorize(probe);
    v1::JobStatus status;
    const grpc::Status reached = connection.stub->GetJob(&probe, request, &status);
    if (!reached.ok()) {
      if (Retryable(reached) && Clock::now() < give_up) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        continue;
      }
      return WithContext(FromGrpcStatus(reached), absl::StrCat("--coordinator ", flags.coordinator));
    }
    if (IsTerminal(status.state())) return status;
    grpc::ClientContext context;
    connection.Authorize(context);
    auto reader = connection.stub->WatchJob(&context, request);
    bool final = false;
    while (reader->Read(&status)) {  // the server ends the stream after a final state
      std::cerr << StatusLine(status) << std::endl;
      std::vector<std::string> plan(status.device_plan().begin(), status.device_plan().end());
      if (!IsTerminal(status.state()) && !plan.empty() && plan != plan_shown) {  // the final status prints its own
        PrintDevicePlan(status, std::cerr);
        plan_shown = std::move(plan);
      }
      give_up = Clock::now() + patience;
      final = IsTerminal(status.state());
    }
    const grpc::Status end = reader->Finish();
    if (final) return status;
    if (!end.ok() && !Retryable(end)) return FromGrpcStatus(end);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

absl::Status JobOutcome(const v1::JobStatus& status) {
  if (status.state() == v1::JOB_STATE_SUCCEEDED) return absl::OkStatus();
  return absl::AbortedError(absl::StrCat(status.job_id(), " ended ", JobStateName(status.state()),
                                         status.error().empty() ? "" : ": ", status.error()));
}

}  // namespace qshard::cli
