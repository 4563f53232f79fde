// The client-facing gRPC JobService (proto/qshard.proto) on the callback API: it checks and
// records requests (journal.h), hands jobs to the scheduler (job_scheduler.h) and streams their
// progress. Every error leaves through ToGrpcStatus with the field at fault named.
#pragma once

#include <functional>

#include "coordinator/allowed_roots.h"
#include "coordinator/client_access.h"
#include "coordinator/job_scheduler.h"
#include "coordinator/journal.h"
#include "qshard.grpc.pb.h"

namespace qshard {

class JobServiceImpl final : public v1::JobService::CallbackService {
 public:
  // `admit` decides whether a valid spec may run at all (job_admission.h); null takes every one.
  // Without `access`, every caller is admitted without limit.
  using Admission = std::function<absl::Status(const JobSpec&)>;
  JobServiceImpl(Journal& journal, JobScheduler& scheduler, const AllowedRoots& roots, Admission admit = nullptr,
                 ClientAccess* access = nullptr)
      : journal_(journal), scheduler_(scheduler), roots_(roots), admit_(std::move(admit)), access_(access) {}

  grpc::ServerUnaryReactor* SubmitJob(grpc::CallbackServerContext* context, const v1::SubmitJobRequest* request,
                                      v1::SubmitJobResponse* response) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* context, const v1::GetJobRequest* request,
                                   v1::JobStatus* response) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* context, const v1::ListJobsRequest* request,
                                     v1::ListJobsResponse* response) override;
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* context, const v1::CancelJobRequest* request,
                                      v1::CancelJobResponse* response) override;
  grpc::ServerWriteReactor<v1::JobStatus>* WatchJob(grpc::CallbackServerContext* context,
                                                    const v1::GetJobRequest* request) override;

 private:
  // The caller's name (client_access.h), or UNAUTHENTICATED.
  absl::StatusOr<std::string> Caller(const grpc::CallbackServerContext& context) const;
  absl::StatusOr<v1::SubmitJobResponse> Submit(const grpc::CallbackServerContext& context, const v1::JobSpec& proto);
  absl::StatusOr<v1::ListJobsResponse> List(const v1::ListJobsRequest& request);

  Journal& journal_;
  JobScheduler& scheduler_;
  const AllowedRoots& roots_;
  Admission admit_;
  ClientAccess* access_;
};

}  // namespace qshard
