// qshard jobs | watch JOB | cancel JOB: the coordinator's jobs seen and steered from a client.
#include <iostream>

#include "coordinator/grpc_status.h"
#include "core/status.h"
#include "tools/qshard/command.h"
#include "tools/qshard/job_client.h"

namespace qshard::cli {
namespace {

struct JobFlagsOfClient {
  ClientFlags client;
  std::string job_id;
};

absl::Status RunJobs(const ClientFlags& flags) {
  QSHARD_ASSIGN_OR_RETURN(const JobConnection connection, ConnectToCoordinator(flags));
  v1::ListJobsRequest request;
  while (true) {
    grpc::ClientContext context;
    connection.Authorize(context);
    v1::ListJobsResponse page;
    QSHARD_RETURN_IF_ERROR(FromGrpcStatus(connection.stub->ListJobs(&context, request, &page)));
    for (const v1::JobStatus& job : page.jobs()) PrintJobStatus(job, flags.json);
    if (page.next_page_token().empty()) return absl::OkStatus();
    request.set_page_token(page.next_page_token());
  }
}

absl::Status RunWatch(const JobFlagsOfClient& flags) {
  QSHARD_ASSIGN_OR_RETURN(const JobConnection connection, ConnectToCoordinator(flags.client));
  QSHARD_ASSIGN_OR_RETURN(const v1::JobStatus final, FollowJob(connection, flags.job_id, flags.client));
  PrintJobStatus(final, flags.client.json);
  return JobOutcome(final);
}

absl::Status RunCancel(const JobFlagsOfClient& flags) {
  QSHARD_ASSIGN_OR_RETURN(const JobConnection connection, ConnectToCoordinator(flags.client));
  grpc::ClientContext context;
  connection.Authorize(context);
  v1::CancelJobRequest request;
  request.set_job_id(flags.job_id);
  v1::CancelJobResponse response;
  QSHARD_RETURN_IF_ERROR(FromGrpcStatus(connection.stub->CancelJob(&context, request, &response)));
  PrintJobStatus(response.status(), flags.client.json);
  return absl::OkStatus();
}

CLI::App* AddJobCommand(CLI::App& root, const std::string& name, const std::string& help, JobFlagsOfClient& flags) {
  CLI::App* app = root.add_subcommand(name, help);
  app->add_option("job", flags.job_id, "The job id, e.g. job-3")->required();
  AddClientFlags(*app, flags.client);
  return app;
}

}  // namespace

void RegisterJobs(CLI::App& root, CommandList& commands) {
  auto list = std::make_shared<ClientFlags>();
  CLI::App* jobs = root.add_subcommand("jobs", "List the coordinator's jobs, oldest first");
  AddClientFlags(*jobs, *list);
  commands.push_back({jobs, [list] { return RunJobs(*list); }});

  auto watch = std::make_shared<JobFlagsOfClient>();
  CLI::App* watch_app = AddJobCommand(root, "watch", "Follow a job to its end; exit 0 only if it succeeded", *watch);
  watch_app->add_option("--reconnect-seconds", watch->client.reconnect_seconds,
                        "How long to wait for a coordinator that went away")->capture_default_str();
  commands.push_back({watch_app, [watch] { return RunWatch(*watch); }});

  auto cancel = std::make_shared<JobFlagsOfClient>();
  CLI::App* cancel_app = AddJobCommand(root, "cancel", "Cancel a job; its partial output is removed", *cancel);
  commands.push_back({cancel_app, [cancel] { return RunCancel(*cancel); }});
}

}  // namespace qshard::cli
