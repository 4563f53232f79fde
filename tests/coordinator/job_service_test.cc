// The JobService in process, over loopback gRPC, with a job executor the test controls: the
// idempotent submit, watching (late watchers included), paging, cancel, recovery after a
// restart, health, and hostile requests that must get the right code and leave a running job
// alone. The real engine behind the service is tested by service_process_test.cc.
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "coordinator/coordinator_server.h"
#include "remote/job_spec_proto.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/byte_buffer.h"
#include "gtest/gtest.h"
#include "tests/core/scoped_temp_dir.h"
#include "tests/remote/raw_grpc.h"

namespace qshard {
namespace {

namespace fs = std::filesystem;
using testing::BufferBytes;
using testing::CallRaw;
using testing::HealthOf;
using testing::ScopedTempDir;

// What one CUDA worker keeps on its device, as the runner tells it at the job's start and
// reports at its end.
const nlohmann::json kDevicePlan = {{{"worker", 0}, {"summary", "device plan: a layer's bound 1.0 GB"}}};

// A job that tells its device plan, reports two layers and the modules it works on (layer 1's
// up_proj before the gate, its down_proj after, then the checkpoint written and validated),
// writes a file into its output, and waits at the gate (while solving, or with `gated_in_validation` while validating)
// until the test opens it or the job is cancelled.
class GatedExecutor {
 public:
  bool gated_in_validation = false;

  absl::StatusOr<nlohmann::json> Run(const JobSpec& spec, const JobEvents& events) {
    fs::create_directories(spec.out_dir);
    std::ofstream(spec.out_dir + "/model.safetensors") << "partial";
    events.device_plan(kDevicePlan);
    events.layer_done({0, 2, 0.1, 0.1});
    events.module_started({1, 2, {"mlp.gate_proj", "mlp.up_proj"}, JobPhase::kCalibrating});
    events.module_started({1, 2, {"mlp.gate_proj", "mlp.up_proj"}, JobPhase::kSolving});
    if (!gated_in_validation && !PassGate(events)) return absl::CancelledError("job cancelled");
    events.module_started({1, 2, {"mlp.down_proj"}, JobPhase::kSolving});
    events.layer_done({1, 2, 0.1, 0.2});
    events.module_started({2, 2, {}, JobPhase::kWriting});
    events.module_started({2, 2, {}, JobPhase::kValidating});
    if (gated_in_validation && !PassGate(events)) return absl::CancelledError("job cancelled");
    return nlohmann::json{{"summary", {{"seconds_total", 0.25}}},
                          {"device_plan", kDevicePlan},
                          {"modules", {{{"layer", 0}, {"name", "mlp.up_proj"}, {"relative_error", 0.5}}}},
                          {"validation", {{"perplexity", 21.5},
                                          {"base_perplexity", 20.25},
                                          {"kl_divergence", 0.125},
                                          {"top1_agreement", 0.875},
                                          {"kernels", "exact"},
                                          {"device", "cuda:1"}}}};
  }
  // Waits at the gate; false: the job was cancelled.
  bool PassGate(const JobEvents& events) {
    std::unique_lock<std::mutex> lock(mu_);
    ++started_;
    changed_.notify_all();
    while (!open_ && !events.cancelled->load()) changed_.wait_for(lock, std::chrono::milliseconds(5));
    return !events.cancelled->load();
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    changed_.notify_all();
  }
  void WaitStarted(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    changed_.wait(lock, [&] { return started_ >= n; });
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  bool open_ = false;
  int started_ = 0;
};

class JobServiceTest : public ::testing::Test {
 protected:
  // The jobs' model: TinyStories' config.json, all that admission (the job's plan) reads.
  void SetUp() override {
    std::filesystem::create_directories(root_.Child("model"));
    std::filesystem::copy_file("../shared/data/tinystories-656k/config.json", root_.Child("model/config.json"));
  }

  void StartCoordinator(GatedExecutor& executor, const ClientAccessOptions& access = {}) {
    CoordinatorOptions options;
    options.access = access;
    options.listen = "127.0.0.1:0";
    options.state_dir = state_.path();
    options.allowed_roots = {root_.path()};
    options.executor = [&executor](const JobSpec& spec, const JobEvents& events) { return executor.Run(spec, events); };
    auto coordinator = Coordinator::Start(options);
    ASSERT_TRUE(coordinator.ok()) << coordinator.status();
    coordinator_ = *std::move(coordinator);
    channel_ = grpc::CreateChannel(coordinator_->address(), grpc::InsecureChannelCredentials());
    stub_ = v1::JobService::NewStub(channel_);
  }

  v1::JobSpec Spec(const std::string& out, const std::string& request_id = "") {
    JobSpec spec;
    spec.model_dir = root_.Child("model");
    spec.out_dir = root_.Child(out);
    spec.method.method = "rtn";
    v1::JobSpec proto = JobSpecToProto(spec);
    proto.set_client_request_id(request_id);
    return proto;
  }

  grpc::Status Submit(const v1::JobSpec& spec, v1::SubmitJobResponse* response = nullptr) {
    grpc::ClientContext context;
    v1::SubmitJobRequest request;
    *request.mutable_spec() = spec;
    v1::SubmitJobResponse ignored;
    return stub_->SubmitJob(&context, request, response != nullptr ? response : &ignored);
  }

  v1::JobStatus Get(const std::string& job_id) {
    grpc::ClientContext context;
    v1::GetJobRequest request;
    request.set_job_id(job_id);
    v1::JobStatus status;
    EXPECT_TRUE(stub_->GetJob(&context, request, &status).ok()) << job_id;
    return status;
  }

  // Every status a watcher receives until the stream ends.
  std::vector<v1::JobStatus> Watch(const std::string& job_id, grpc::Status* end = nullptr) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    v1::GetJobRequest request;
    request.set_job_id(job_id);
    auto reader = stub_->WatchJob(&context, request);
    std::vector<v1::JobStatus> seen;
    v1::JobStatus status;
    while (reader->Read(&status)) seen.push_back(status);
    const grpc::Status finished = reader->Finish();
    if (end != nullptr) *end = finished;
    return seen;
  }

  v1::JobStatus WaitFinal(const std::string& job_id) {
    const std::vector<v1::JobStatus> seen = Watch(job_id);
    return seen.empty() ? v1::JobStatus() : seen.back();
  }

  // Executors outlive the coordinator, whose thread may still be inside one.
  GatedExecutor& NewExecutor() { return executors_.emplace_back(); }

  ScopedTempDir root_, state_, outside_;
  std::deque<GatedExecutor> executors_;
  std::unique_ptr<Coordinator> coordinator_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::JobService::Stub> stub_;
};

TEST_F(JobServiceTest, AJobRunsAndWatchersSeeItsStatesInOrder) {
  GatedExecutor& executor = NewExecutor();
  StartCoordinator(executor);
  v1::SubmitJobResponse submitted;
  ASSERT_TRUE(Submit(Spec("out"), &submitted).ok());
  EXPECT_TRUE(submitted.created());
  executor.WaitStarted(1);
  grpc::ClientContext context;
  v1::GetJobRequest request;
  request.set_job_id(submitted.job_id());
  auto reader = stub_->WatchJob(&context, request);
  std::vector<v1::JobStatus> seen(1);
  ASSERT_TRUE(reader->Read(&seen.front()));  // the current state first, then the rest
  const v1::JobStatus got = Get(submitted.job_id());
  executor.Open();
  for (v1::JobStatus status; reader->Read(&status);) seen.push_back(status);
  EXPECT_TRUE(reader->Finish().ok());
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.front().state(), v1::JOB_STATE_RUNNING);  // the current state first
  EXPECT_EQ(seen.back().state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(seen.back().layers_done(), 2);
  EXPECT_EQ(seen.back().layers_total(), 2);
  EXPECT_DOUBLE_EQ(seen.back().seconds(), 0.25);
  ASSERT_EQ(seen.back().linears_size(), 1);
  EXPECT_EQ(seen.back().linears(0).name(), "mlp.up_proj");
  // The report's validation, with where it ran.
  const v1::ValidationResult& validation = seen.back().validation();
  EXPECT_DOUBLE_EQ(validation.perplexity(), 21.5);
  EXPECT_DOUBLE_EQ(validation.base_perplexity(), 20.25);
  EXPECT_DOUBLE_EQ(validation.kl_divergence(), 0.125);
  EXPECT_DOUBLE_EQ(validation.top1_agreement(), 0.875);
  EXPECT_EQ(validation.device(), "cuda:1");
  EXPECT_EQ(validation.kernels(), "exact");
  EXPECT_FALSE(seen.front().has_validation());  // not before the job has finished
  // The device plan lines, one per worker: while it runs (told at its start), then the report's.
  for (const v1::JobStatus* status : std::vector<const v1::JobStatus*>{&seen.front(), &got, &seen.back()}) {
    ASSERT_EQ(status->device_plan_size(), 1);
    EXPECT_EQ(status->device_plan(0), "device plan: a layer's bound 1.0 GB");
  }
  for (size_t i = 1; i < seen.size(); ++i) EXPECT_GE(seen[i].layers_done(), seen[i - 1].layers_done());
  // The module being worked on: the current one first (as GetJob has it), then the later ones
  // in order (a slow watcher may skip some), none once the job has finished.
  for (const v1::JobStatus* status : std::vector<const v1::JobStatus*>{&seen.front(), &got}) {
    ASSERT_TRUE(status->has_module());
    EXPECT_EQ(status->module().layer(), 1);
    EXPECT_EQ(std::vector<std::string>(status->module().linears().begin(), status->module().linears().end()),
              (std::vector<std::string>{"mlp.gate_proj", "mlp.up_proj"}));
    EXPECT_EQ(status->module().phase(), v1::JOB_PHASE_SOLVING);
  }
  EXPECT_FALSE(seen.back().has_module());
  // The steps seen, in the order the job took them (a slow watcher skips some after the first).
  const std::vector<std::string> steps = {"SOLVING mlp.gate_proj", "SOLVING mlp.down_proj", "WRITING ",
                                          "VALIDATING "};
  size_t next = 0;
  for (const v1::JobStatus& status : seen) {
    if (!status.has_module()) continue;
    const std::string step = absl::StrCat(absl::StripPrefix(v1::JobPhase_Name(status.module().phase()), "JOB_PHASE_"),
                                          " ", status.module().linears().empty() ? "" : status.module().linears(0));
    while (next < steps.size() && steps[next] != step) ++next;
    ASSERT_LT(next, steps.size()) << step << " out of order";
  }

  grpc::Status end;
  const std::vector<v1::JobStatus> late = Watch(submitted.job_id(), &end);  // after the end
  EXPECT_TRUE(end.ok()) << end.error_message();
  ASSERT_EQ(late.size(), 1u);
  EXPECT_EQ(late.front().state(), v1::JOB_STATE_SUCCEEDED);
}

// A job validating its checkpoint says so: every layer done, the step the whole checkpoint's
// (the layer count, no linears), until the job ends.
TEST_F(JobServiceTest, AJobValidatingItsCheckpointShowsTheValidatingPhase) {
  GatedExecutor& executor = NewExecutor();
  executor.gated_in_validation = true;
  StartCoordinator(executor);
  v1::SubmitJobResponse submitted;
  ASSERT_TRUE(Submit(Spec("out"), &submitted).ok());
  executor.WaitStarted(1);
  const v1::JobStatus validating = Get(submitted.job_id());
  EXPECT_EQ(validating.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(validating.layers_done(), 2);
  ASSERT_TRUE(validating.has_module());
  EXPECT_EQ(validating.module().phase(), v1::JOB_PHASE_VALIDATING);
  EXPECT_EQ(validating.module().layer(), 2);
  EXPECT_TRUE(validating.module().linears().empty());
  EXPECT_FALSE(validating.has_validation());  // not before it has finished
  executor.Open();
  const v1::JobStatus finished = WaitFinal(submitted.job_id());
  EXPECT_EQ(finished.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_FALSE(finished.has_module());
  EXPECT_DOUBLE_EQ(finished.validation().perplexity(), 21.5);
}

TEST_F(JobServiceTest, SubmitIsIdempotentOnTheRequestId) {
  GatedExecutor& executor = NewExecutor();
  StartCoordinator(executor);
  v1::SubmitJobResponse first, again;
  ASSERT_TRUE(Submit(Spec("out", "req-7"), &first).ok());
  v1::JobSpec same = Spec("out", "req-7");
  same.mutable_calibration()->set_nsamples(0);  // spelled differently, the same job
  ASSERT_TRUE(Submit(same, &again).ok());
  EXPECT_EQ(again.job_id(), first.job_id());
  EXPECT_FALSE(again.created());
  v1::JobSpec other = Spec("out", "req-7");
  other.mutable_quant()->set_bits(8);
  const grpc::Status status = Submit(other);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_NE(status.error_message().find("client_request_id"), std::string::npos) << status.error_message();
  executor.Open();
  EXPECT_EQ(WaitFinal(first.job_id()).state(), v1::JOB_STATE_SUCCEEDED);
  // The finished job's output exists now; the same request still answers with its job.
  ASSERT_TRUE(Submit(Spec("out", "req-7"), &again).ok());
  EXPECT_EQ(again.job_id(), first.job_id());
  EXPECT_EQ(Submit(Spec("out", "req-8")).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(JobServiceTest, HostileRequestsGetTheirCodesAndLeaveTheRunningJobAlone) {
  GatedExecutor& executor = NewExecutor();
  StartCoordinator(executor);
  v1::SubmitJobResponse running;
  ASSERT_TRUE(Submit(Spec("out"), &running).ok());
  executor.WaitStarted(1);
  fs::create_symlink(outside_.path(), root_.Child("link"));

  const auto expect = [&](v1::JobSpec spec, grpc::StatusCode code, const std::string& field) {
    const grpc::Status status = Submit(spec);
    EXPECT_EQ(status.error_code(), code) << field << ": " << status.error_message();
    EXPECT_NE(status.error_message().find(field), std::string::npos) << status.error_message();
  };
  v1::JobSpec spec = Spec("other");
  spec.mutable_quant()->set_method("nope");
  expect(spec, grpc::StatusCode::INVALID_ARGUMENT, "quant.method");
  for (int bits : {0, 9}) {
    spec = Spec("other");
    spec.mutable_quant()->set_bits(bits);
    expect(spec, grpc::StatusCode::INVALID_ARGUMENT, "quant.bits");
  }
  spec = Spec("other");
  spec.set_output_path(outside_.Child("out"));
  expect(spec, grpc::StatusCode::PERMISSION_DENIED, "output_path");
  spec.set_output_path(root_.Child("../escape"));
  expect(spec, grpc::StatusCode::INVALID_ARGUMENT, "output_path");
  spec.set_output_path(root_.Child("link/out"));
  expect(spec, grpc::StatusCode::PERMISSION_DENIED, "output_path");
  spec = Spec("other");
  spec.set_model_path(outside_.path());
  expect(spec, grpc::StatusCode::PERMISSION_DENIED, "model_path");
  spec = Spec("other");
  spec.mutable_calibration()->set_text_path("/etc/passwd");
  expect(spec, grpc::StatusCode::PERMISSION_DENIED, "calibration.text_path");
  spec = Spec("other");
  spec.mutable_quant()->add_skip(std::string(kMaxMessageBytes + 1, 'x'));
  EXPECT_EQ(Submit(spec).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  for (const char* id : {"job-999", "nonsense", ""}) {
    grpc::ClientContext get_context, cancel_context;
    v1::GetJobRequest get;
    get.set_job_id(id);
    v1::JobStatus status;
    EXPECT_EQ(stub_->GetJob(&get_context, get, &status).error_code(), grpc::StatusCode::NOT_FOUND);
    v1::CancelJobRequest cancel;
    cancel.set_job_id(id);
    v1::CancelJobResponse cancelled;
    const grpc::Status c = stub_->CancelJob(&cancel_context, cancel, &cancelled);
    EXPECT_EQ(c.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_NE(c.error_message().find("job_id"), std::string::npos);
    grpc::Status end;
    EXPECT_TRUE(Watch(id, &end).empty());
    EXPECT_EQ(end.error_code(), grpc::StatusCode::NOT_FOUND);
  }
  EXPECT_EQ(CallRaw(*channel_, "/qshard.v1.JobService/DropTables", "").error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  grpc::ClientContext list_context;
  v1::ListJobsRequest list;
  list.set_page_token("-3");
  v1::ListJobsResponse listed;
  EXPECT_EQ(stub_->ListJobs(&list_context, list, &listed).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  EXPECT_EQ(Get(running.job_id()).state(), v1::JOB_STATE_RUNNING);
  executor.Open();
  EXPECT_EQ(WaitFinal(running.job_id()).state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_FALSE(fs::exists(root_.Child("other")));
}

TEST_F(JobServiceTest, SubmissionsPastTheRateAreResourceExhausted) {
  GatedExecutor& executor = NewExecutor();
  ClientAccessOptions limited;
  limited.submits_per_minute = 2;
  StartCoordinator(executor, limited);
  v1::SubmitJobResponse first;
  ASSERT_TRUE(Submit(Spec("a", "r1"), &first).ok());
  ASSERT_TRUE(Submit(Spec("b", "r2")).ok());
  const grpc::Status over = Submit(Spec("c", "r3"));
  EXPECT_EQ(over.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << over.error_message();
  EXPECT_NE(over.error_message().find("--max-submits-per-minute"), std::string::npos);
  EXPECT_EQ(Get(first.job_id()).job_id(), first.job_id()) << "only submissions are limited";
  executor.Open();
}

TEST_F(JobServiceTest, CancelStopsTheJobAndRemovesItsOutput) {
  GatedExecutor& executor = NewExecutor();
  StartCoordinator(executor);
  v1::SubmitJobResponse running, queued;
  ASSERT_TRUE(Submit(Spec("a"), &running).ok());
  ASSERT_TRUE(Submit(Spec("b"), &queued).ok());
  executor.WaitStarted(1);
  ASSERT_TRUE(fs::exists(root_.Child("a/model.safetensors")));

  const auto cancel = [&](const std::string& id, v1::CancelJobResponse* response) {
    grpc::ClientContext context;
    v1::CancelJobRequest request;
    request.set_job_id(id);
    return stub_->CancelJob(&context, request, response);
  };
  v1::CancelJobResponse response;
  ASSERT_TRUE(cancel(queued.job_id(), &response).ok());
  EXPECT_EQ(response.status().state(), v1::JOB_STATE_CANCELLED);  // never ran
  ASSERT_TRUE(cancel(running.job_id(), &response).ok());
  EXPECT_TRUE(response.status().state() == v1::JOB_STATE_CANCELLING ||
              response.status().state() == v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(WaitFinal(running.job_id()).state(), v1::JOB_STATE_CANCELLED);
  EXPECT_FALSE(fs::exists(root_.Child("a")));
  const grpc::Status again = cancel(running.job_id(), &response);
  EXPECT_EQ(again.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(JobServiceTest, TwoJobsOnOneOutputNeverRemoveTheFirstOnesFiles) {
  GatedExecutor& executor = NewExecutor();
  StartCoordinator(executor);
  v1::SubmitJobResponse first, second;
  ASSERT_TRUE(Submit(Spec("same", "1"), &first).ok());
  // Refused at submission while the first job is queued or running, however the path is spelt.
  v1::JobSpec again = Spec("same", "2");
  again.set_output_path(again.output_path() + "/./");
  const grpc::Status submitted = Submit(again, &second);
  EXPECT_EQ(submitted.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(submitted.error_message().find("output_path"), std::string::npos) << submitted.error_message();
  EXPECT_NE(submitted.error_message().find(first.job_id()), std::string::npos) << submitted.error_message();
  // A queued job has written nothing yet, and owns its output all the same.
  v1::SubmitJobResponse queued;
  ASSERT_TRUE(Submit(Spec("later", "4"), &queued).ok());
  const grpc::Status behind = Submit(Spec("later", "5"), &second);
  EXPECT_EQ(behind.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(behind.error_message().find(queued.job_id()), std::string::npos) << behind.error_message();
  executor.Open();
  EXPECT_EQ(WaitFinal(first.job_id()).state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(WaitFinal(queued.job_id()).state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_TRUE(fs::exists(root_.Child("same/model.safetensors")));
  // Once the first has ended, its output exists: still refused, now for that reason.
  EXPECT_EQ(Submit(Spec("same", "3"), &second).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(JobServiceTest, AJobTooLargeForThisMachineIsRefusedWithItsNumbers) {
  GatedExecutor& executor = NewExecutor();
  StartCoordinator(executor);
  std::ofstream(root_.Child("calibration.txt")) << "text\n";
  JobSpec spec;
  spec.model_dir = root_.Child("model");
  spec.out_dir = root_.Child("huge");
  spec.method.method = "gptq";
  spec.calibration.text = root_.Child("calibration.txt");
  spec.calibration.nsamples = 20'000'000;  // 20M windows of 512 tokens: about 5 TB of hidden states
  spec.calibration.seqlen = 512;
  const grpc::Status status = Submit(JobSpecToProto(spec));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_NE(status.error_message().find("calibration hidden states"), std::string::npos) << status.error_message();
  EXPECT_NE(status.error_message().find("this machine has"), std::string::npos) << status.error_message();
  EXPECT_FALSE(std::filesystem::exists(root_.Child("huge")));
  grpc::ClientContext context;
  v1::ListJobsRequest request;
  v1::ListJobsResponse jobs;
  ASSERT_TRUE(stub_->ListJobs(&context, request, &jobs).ok());
  EXPECT_EQ(jobs.jobs_size(), 0);
}

TEST_F(JobServiceTest, ListJobsPagesThroughEveryJob) {
  GatedExecutor& executor = NewExecutor();
  StartCoordinator(executor);
  std::vector<std::string> ids;
  for (const char* out : {"a", "b", "c", "d", "e"}) {
    v1::SubmitJobResponse response;
    ASSERT_TRUE(Submit(Spec(out), &response).ok());
    ids.push_back(response.job_id());
  }
  std::vector<std::string> listed;
  std::string token;
  do {
    grpc::ClientContext context;
    v1::ListJobsRequest request;
    request.set_page_size(2);
    request.set_page_token(token);
    v1::ListJobsResponse response;
    ASSERT_TRUE(stub_->ListJobs(&context, request, &response).ok());
    EXPECT_LE(response.jobs_size(), 2);
    for (const v1::JobStatus& job : response.jobs()) listed.push_back(job.job_id());
    token = response.next_page_token();
  } while (!token.empty());
  EXPECT_EQ(listed, ids);
  executor.Open();
}

TEST_F(JobServiceTest, ARestartedCoordinatorRunsTheInterruptedJobAgain) {
  GatedExecutor& first = NewExecutor();
  StartCoordinator(first);
  v1::SubmitJobResponse submitted;
  ASSERT_TRUE(Submit(Spec("out", "r"), &submitted).ok());
  first.WaitStarted(1);
  coordinator_.reset();  // the job was RUNNING; it stays so in the journal

  GatedExecutor& second = NewExecutor();
  second.Open();
  StartCoordinator(second);
  const v1::JobStatus final = WaitFinal(submitted.job_id());
  EXPECT_EQ(final.state(), v1::JOB_STATE_SUCCEEDED);
  auto journal = Journal::Open(state_.path());  // a second reader of the WAL journal
  ASSERT_TRUE(journal.ok());
  auto history = (*journal)->History(submitted.job_id());
  ASSERT_TRUE(history.ok());
  std::vector<JobState> states;
  for (const StateChange& change : *history) states.push_back(change.to);
  EXPECT_EQ(states, (std::vector<JobState>{v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING, v1::JOB_STATE_QUEUED,
                                           v1::JOB_STATE_RUNNING, v1::JOB_STATE_SUCCEEDED}));
}

TEST_F(JobServiceTest, ServesHealth) {
  GatedExecutor& executor = NewExecutor();
  StartCoordinator(executor);
  EXPECT_EQ(HealthOf(*channel_, "qshard.v1.JobService"), "SERVING");
}

TEST_F(JobServiceTest, ServesReflection) {
  GatedExecutor& executor = NewExecutor();
  StartCoordinator(executor);
  // One ServerReflectionRequest{list_services: "*"} on the bidi stream, encoded by hand.
  grpc::GenericStub stub(channel_);
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto call = stub.PrepareCall(&context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  const auto step = [&](int tag) {
    void* got = nullptr;
    bool ok = false;
    EXPECT_TRUE(cq.Next(&got, &ok));
    EXPECT_EQ(got, reinterpret_cast<void*>(static_cast<intptr_t>(tag)));
    return ok;
  };
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(step(1));
  grpc::Slice slice(std::string("\x3a\x01*", 3));
  grpc::ByteBuffer request(&slice, 1), response;
  call->Write(request, reinterpret_cast<void*>(2));
  ASSERT_TRUE(step(2));
  call->WritesDone(reinterpret_cast<void*>(3));
  step(3);
  call->Read(&response, reinterpret_cast<void*>(4));
  ASSERT_TRUE(step(4));
  EXPECT_NE(BufferBytes(response).find("qshard.v1.JobService"), std::string::npos);
  EXPECT_NE(BufferBytes(response).find("grpc.health.v1.Health"), std::string::npos);
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  step(5);
  cq.Shutdown();
  void* tag;
  bool ok;
  while (cq.Next(&tag, &ok)) {
  }
}

TEST(CoordinatorTest, PlaintextOnlyOnLoopback) {
  EXPECT_TRUE(IsLoopbackAddress("127.0.0.1:7000"));
  EXPECT_TRUE(IsLoopbackAddress("127.3.2.1:0"));
  EXPECT_TRUE(IsLoopbackAddress("localhost:7000"));
  EXPECT_TRUE(IsLoopbackAddress("[::1]:7000"));
  EXPECT_TRUE(IsLoopbackAddress("unix:/tmp/qshard.sock"));
  EXPECT_FALSE(IsLoopbackAddress("0.0.0.0:7000"));
  EXPECT_FALSE(IsLoopbackAddress("[::]:7000"));
  EXPECT_FALSE(IsLoopbackAddress("10.1.2.3:7000"));
  EXPECT_FALSE(IsLoopbackAddress("example.com:7000"));
  ScopedTempDir root, state;
  CoordinatorOptions options;
  options.listen = "0.0.0.0:0";
  options.state_dir = state.path();
  options.allowed_roots = {root.path()};
  auto refused = Coordinator::Start(options);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("--insecure"), std::string::npos);
  options.listen = "127.0.0.1:0";
  options.allowed_roots = {};
  EXPECT_NE(Coordinator::Start(options).status().message().find("--allowed-root"), std::string::npos);
}

// A validation device the coordinator cannot open (no such ordinal on any machine), or
// validation on workers it will not have, stops it at the start, not at a job's end.
TEST(CoordinatorTest, AValidationItCannotRunIsRefusedAtStart) {
  ScopedTempDir root, state;
  CoordinatorOptions options;
  options.listen = "127.0.0.1:0";
  options.state_dir = state.path();
  options.allowed_roots = {root.path()};
  options.validation_device = Device{Device::Kind::kCuda, 99};
  auto refused = Coordinator::Start(options);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("--validate-device"), std::string::npos) << refused.status();
  EXPECT_NE(refused.status().message().find("cuda:99"), std::string::npos) << refused.status();
  // Validating on a worker needs workers: with none, jobs run in the coordinator's process.
  options.validation_device = Device{};
  options.validate_on_worker = true;
  refused = Coordinator::Start(options);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("--validate-on worker"), std::string::npos) << refused.status();
  EXPECT_NE(refused.status().message().find("--workers"), std::string::npos) << refused.status();
}

}  // namespace
}  // namespace qshard
