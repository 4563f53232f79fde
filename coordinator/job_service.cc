#include "coordinator/job_service.h"

#include <filesystem>
#include <mutex>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "coordinator/grpc_status.h"
#include "remote/job_spec_proto.h"
#include "core/status.h"

namespace qshard {
namespace {

constexpr int kDefaultPageSize = 50;
constexpr int kMaxPageSize = 1000;

grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* context, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

template <typename T>
grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* context, absl::StatusOr<T> result, T* response) {
  if (result.ok()) *response = *std::move(result);
  return Answer(context, result.status());
}

// Streams a job's status: the current one first, then every change, ending after a final
// state. Writes never overlap: while one is in flight only the newest pending status is kept
// (a slow watcher may miss progress, never the final state, which is the last offered).
class WatchReactor : public grpc::ServerWriteReactor<v1::JobStatus> {
 public:
  // A caller that is not `allowed` gets that status and watches nothing.
  WatchReactor(JobScheduler& scheduler, const std::string& job_id, const absl::Status& allowed) : scheduler_(scheduler) {
    absl::StatusOr<int64_t> token =
        allowed.ok() ? scheduler_.Watch(job_id, [this](const v1::JobStatus& s) { Offer(s); }) : allowed;
    std::lock_guard<std::mutex> lock(mu_);
    if (token.ok()) {
      token_ = *token;
    } else {
      FinishLocked(ToGrpcStatus(token.status()));
    }
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    if (!ok) return FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the watcher went away"));
    if (IsTerminal(in_flight_.state())) return FinishLocked(grpc::Status::OK);
    if (pending_) StartLocked();
  }

  void OnCancel() override {
    std::lock_guard<std::mutex> lock(mu_);
    FinishLocked(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    // After Unwatch no listener call is running or can start, so deleting is safe.
    if (token_ != 0) scheduler_.Unwatch(token_);
    delete this;
  }

 private:
  void Offer(const v1::JobStatus& status) {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;
    pending_ = status;
    if (!writing_) StartLocked();
  }

  void StartLocked() {
    in_flight_ = *std::move(pending_);
    pending_.reset();
    writing_ = true;
    StartWrite(&in_flight_);
  }

  // Finish is called once; gRPC orders it after a write still in flight.
  void FinishLocked(const grpc::Status& status) {
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

  JobScheduler& scheduler_;
  int64_t token_ = 0;
  std::mutex mu_;
  std::optional<v1::JobStatus> pending_;
  v1::JobStatus in_flight_;
  bool writing_ = false;
  bool finished_ = false;
};

// A path as a job writes it, for comparing two jobs' outputs ("a/./b/" is "a/b").
std::filesystem::path OutputKey(const std::string& out_dir) {
  std::filesystem::path key = std::filesystem::path(out_dir).lexically_normal();
  return key.has_filename() ? key : key.parent_path();
}

// A queued or running job owns its output path until it ends: a second job there could only
// fail when it starts, after the first has written there, so it is refused at submission.
absl::Status CheckNoUnfinishedJobWrites(Journal& journal, const std::string& out_dir) {
  QSHARD_ASSIGN_OR_RETURN(const std::vector<JobRecord> unfinished, journal.Unfinished());
  const std::filesystem::path wanted = OutputKey(out_dir);
  for (const JobRecord& job : unfinished) {
    v1::JobSpec other;
    if (!other.ParseFromString(job.spec))
      return absl::DataLossError(absl::StrCat("the journal's spec of ", job.job_id, " does not parse"));
    if (OutputKey(other.output_path()) == wanted)
      return absl::FailedPreconditionError(absl::StrCat("output_path: ", out_dir, " is the output of ", job.job_id,
                                                        ", which is ", v1::JobState_Name(job.state)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> JobServiceImpl::Caller(const grpc::CallbackServerContext& context) const {
  if (access_ == nullptr) return std::string();
  return access_->Authenticate(context);
}

absl::StatusOr<v1::SubmitJobResponse> JobServiceImpl::Submit(const grpc::CallbackServerContext& context,
                                                             const v1::JobSpec& proto) {
  QSHARD_ASSIGN_OR_RETURN(const std::string caller, Caller(context));
  if (access_ != nullptr) QSHARD_RETURN_IF_ERROR(access_->AdmitSubmission(caller));
  QSHARD_ASSIGN_OR_RETURN(const JobSpec spec, JobSpecFromProto(proto));
  QSHARD_RETURN_IF_ERROR(ValidateJobSpec(spec));
  QSHARD_RETURN_IF_ERROR(roots_.Check(spec.model_dir, "model_path"));
  QSHARD_RETURN_IF_ERROR(roots_.Check(spec.out_dir, "output_path"));
  if (!spec.calibration.text.empty())
    QSHARD_RETURN_IF_ERROR(roots_.Check(spec.calibration.text, "calibration.text_path"));
  if (!spec.validation.text.empty())
    QSHARD_RETURN_IF_ERROR(roots_.Check(spec.validation.text, "validation.text_path"));
  QSHARD_ASSIGN_OR_RETURN(const std::string canonical, CanonicalSpecBytes(proto));

  const std::string& request_id = proto.client_request_id();
  QSHARD_ASSIGN_OR_RETURN(std::optional<JobRecord> seen, journal_.FindByRequestId(request_id));
  if (!seen) {
    QSHARD_RETURN_IF_ERROR(CheckNoUnfinishedJobWrites(journal_, spec.out_dir));
    QSHARD_RETURN_IF_ERROR(CheckOutputIsFree(spec.out_dir));
    if (admit_) QSHARD_RETURN_IF_ERROR(admit_(spec));
  }
  QSHARD_ASSIGN_OR_RETURN(const Journal::Submitted submitted, journal_.Submit(request_id, canonical));
  if (!submitted.created && submitted.job.spec != canonical)
    return absl::AlreadyExistsError(absl::StrCat("client_request_id: '", request_id, "' was used for ",
                                                 submitted.job.job_id, " with another spec"));
  if (submitted.created) scheduler_.Enqueue(submitted.job);
  v1::SubmitJobResponse response;
  response.set_job_id(submitted.job.job_id);
  response.set_created(submitted.created);
  return response;
}

absl::StatusOr<v1::ListJobsResponse> JobServiceImpl::List(const v1::ListJobsRequest& request) {
  if (request.page_size() < 0 || request.page_size() > kMaxPageSize)
    return absl::InvalidArgumentError(absl::StrCat("page_size: ", request.page_size(), " is not in 0..", kMaxPageSize));
  const int size = request.page_size() == 0 ? kDefaultPageSize : request.page_size();
  int64_t after = 0;
  if (!request.page_token().empty() && (!absl::SimpleAtoi(request.page_token(), &after) || after < 0))
    return absl::InvalidArgumentError(
        absl::StrCat("page_token: '", request.page_token(), "' is not a token this service gave"));
  // One more than asked tells whether another page follows.
  QSHARD_ASSIGN_OR_RETURN(std::vector<JobRecord> jobs, journal_.List(after, size + 1));
  v1::ListJobsResponse response;
  const bool more = static_cast<int>(jobs.size()) > size;
  if (more) jobs.pop_back();
  for (const JobRecord& job : jobs) *response.add_jobs() = scheduler_.StatusOf(job);
  if (more) response.set_next_page_token(absl::StrCat(jobs.back().seq));
  return response;
}

grpc::ServerUnaryReactor* JobServiceImpl::SubmitJob(grpc::CallbackServerContext* context,
                                                    const v1::SubmitJobRequest* request,
                                                    v1::SubmitJobResponse* response) {
  return Answer(context, Submit(*context, request->spec()), response);
}

grpc::ServerUnaryReactor* JobServiceImpl::GetJob(grpc::CallbackServerContext* context,
                                                 const v1::GetJobRequest* request, v1::JobStatus* response) {
  if (absl::Status denied = Caller(*context).status(); !denied.ok()) return Answer(context, denied);
  return Answer(context, scheduler_.Status(request->job_id()), response);
}

grpc::ServerUnaryReactor* JobServiceImpl::ListJobs(grpc::CallbackServerContext* context,
                                                   const v1::ListJobsRequest* request,
                                                   v1::ListJobsResponse* response) {
  if (absl::Status denied = Caller(*context).status(); !denied.ok()) return Answer(context, denied);
  return Answer(context, List(*request), response);
}

grpc::ServerUnaryReactor* JobServiceImpl::CancelJob(grpc::CallbackServerContext* context,
                                                    const v1::CancelJobRequest* request,
                                                    v1::CancelJobResponse* response) {
  if (absl::Status denied = Caller(*context).status(); !denied.ok()) return Answer(context, denied);
  absl::StatusOr<v1::JobStatus> status = scheduler_.Cancel(request->job_id());
  if (status.ok()) *response->mutable_status() = *std::move(status);
  return Answer(context, status.status());
}

grpc::ServerWriteReactor<v1::JobStatus>* JobServiceImpl::WatchJob(grpc::CallbackServerContext* context,
                                                                  const v1::GetJobRequest* request) {
  return new WatchReactor(scheduler_, request->job_id(), Caller(*context).status());
}

}  // namespace qshard
