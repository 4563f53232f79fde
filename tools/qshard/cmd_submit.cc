// qshard submit: sends a job (the same flags as `quantize`) to a coordinator; with --wait it
// follows the job to its end and exits 0 only if it succeeded.
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "coordinator/grpc_status.h"
#include "remote/job_spec_proto.h"
#include "core/status.h"
#include "tools/qshard/command.h"
#include "tools/qshard/job_client.h"
#include "tools/qshard/job_flags.h"

namespace qshard::cli {
namespace {

struct SubmitFlags {
  JobFlags job;
  ClientFlags client;
  std::string request_id;
  bool wait = false;
};

// 128 random bits: a retried submit reuses it, so the coordinator makes one job.
absl::StatusOr<std::string> RandomRequestId() {
  char bytes[16];
  const int fd = ::open("/dev/urandom", O_RDONLY);
  const bool ok = fd >= 0 && ::read(fd, bytes, sizeof(bytes)) == static_cast<ssize_t>(sizeof(bytes));
  if (fd >= 0) ::close(fd);
  if (!ok) return absl::UnavailableError("--request-id: cannot read /dev/urandom to make one");
  return absl::BytesToHexString(absl::string_view(bytes, sizeof(bytes)));
}

// The coordinator resolves nothing against the client's working directory.
std::string Absolute(const std::string& path) {
  return path.empty() ? path : std::filesystem::absolute(path).lexically_normal().string();
}

absl::Status RunSubmit(const SubmitFlags& flags) {
  QSHARD_ASSIGN_OR_RETURN(JobSpec spec, JobSpecOfFlags(flags.job));
  spec.model_dir = Absolute(spec.model_dir);
  spec.out_dir = Absolute(spec.out_dir);
  spec.calibration.text = Absolute(spec.calibration.text);
  spec.validation.text = Absolute(spec.validation.text);
  std::string request_id = flags.request_id;
  if (request_id.empty()) {
    QSHARD_ASSIGN_OR_RETURN(request_id, RandomRequestId());
  }

  v1::SubmitJobRequest request;
  *request.mutable_spec() = JobSpecToProto(spec);
  request.mutable_spec()->set_client_request_id(request_id);
  QSHARD_ASSIGN_OR_RETURN(const JobConnection connection, ConnectToCoordinator(flags.client));
  grpc::ClientContext context;
  connection.Authorize(context);
  context.set_wait_for_ready(true);
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::SubmitJobResponse response;
  QSHARD_RETURN_IF_ERROR(WithContext(FromGrpcStatus(connection.stub->SubmitJob(&context, request, &response)),
                                     "--coordinator " + flags.client.coordinator));
  std::cerr << "submitted " << response.job_id() << (response.created() ? "" : " (already submitted)")
            << ", request id " << request_id << std::endl;
  if (!flags.wait) {
    if (flags.client.json) {
      PrintJson({{"job_id", response.job_id()}, {"created", response.created()}, {"client_request_id", request_id}});
    } else {
      std::cout << response.job_id() << std::endl;
    }
    return absl::OkStatus();
  }
  QSHARD_ASSIGN_OR_RETURN(const v1::JobStatus final, FollowJob(connection, response.job_id(), flags.client));
  PrintJobStatus(final, flags.client.json);
  return JobOutcome(final);
}

}  // namespace

void RegisterSubmit(CLI::App& root, CommandList& commands) {
  auto flags = std::make_shared<SubmitFlags>();
  CLI::App* app = root.add_subcommand("submit", "Send a quantization job to a coordinator (the flags of quantize)");
  AddJobFlags(*app, flags->job);
  AddClientFlags(*app, flags->client);
  app->add_option("--request-id", flags->request_id,
                  "Client request id: resubmitting it returns the same job (default: a random one)");
  app->add_flag("--wait", flags->wait, "Follow the job to its end; exit 0 only if it succeeded");
  app->add_option("--reconnect-seconds", flags->client.reconnect_seconds,
                  "With --wait: how long to wait for a coordinator that went away")->capture_default_str();
  commands.push_back({app, [flags] { return RunSubmit(*flags); }});
}

}  // namespace qshard::cli
