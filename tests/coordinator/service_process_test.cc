// The service as separate processes on loopback, driven through the built `qshard` binary:
// `coordinator` + `submit --wait` make the same *.safetensors bytes as RunEmbeddedJob with the
// same spec; hostile requests get their codes without disturbing a running job; and a
// coordinator killed with SIGKILL mid-job and started again finishes the job, while the
// waiting `submit` rides through the restart. Every wait is bounded.
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "remote/job_spec_proto.h"
#include "coordinator/journal.h"
#include "core/synthetic_model.h"
#include "engine/job_runner.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "qshard.grpc.pb.h"
#include "tests/coordinator/child_process.h"
#include "tests/core/scoped_temp_dir.h"

namespace qshard {
namespace {

namespace fs = std::filesystem;
using testing::ReadDirectoryFiles;
using testing::ReadFileBytes;
using testing::ScopedTempDir;
using Clock = std::chrono::steady_clock;

constexpr char kData[] = "../shared/data";

using Process = testing::ChildProcess;

class ServiceProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = fs::canonical(kData).string();
    ASSERT_TRUE(fs::exists(data_ + "/tinystories-656k/model.safetensors")) << "needs " << kData;
    model_ = data_ + "/tinystories-656k";
  }

  // Starts a coordinator on `listen` (running jobs on `workers` worker processes, or in
  // itself; `more` flags) and returns the address it serves.
  std::string StartCoordinator(const std::string& listen, int workers = 0, const std::vector<std::string>& more = {}) {
    std::vector<std::string> args = {"coordinator", "--listen", listen, "--state-dir", dir_.Child("state"),
                                     "--allowed-root", data_, "--allowed-root", dir_.Child("outputs"), "--json",
                                     "--workers", std::to_string(workers), "--worker-wait-seconds", "60"};
    args.insert(args.end(), more.begin(), more.end());
    coordinator_ = std::make_unique<Process>(args, dir_.Child(absl::StrCat("coordinator-", ++starts_)));
    const std::string address = testing::AwaitListening(*coordinator_);
    if (!address.empty())
      stub_ = v1::JobService::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
    return address;
  }

  // An OPT-125m-shaped model of `layers` layers under the outputs root; its directory.
  std::string WriteSyntheticOpt(int layers) {
    SyntheticSpec synthetic;
    synthetic.preset = "opt-125m";
    synthetic.num_layers = layers;
    synthetic.out_dir = dir_.Child("outputs/synthetic-opt");
    synthetic.shared_data_dir = data_;
    const absl::Status written = WriteSyntheticModel(synthetic);
    EXPECT_TRUE(written.ok()) << written;
    return synthetic.out_dir;
  }

  // The job flags of a small job on model_, as `submit` and the JobSpec below both describe it.
  std::vector<std::string> JobFlags(const std::string& method, const std::string& out) {
    std::vector<std::string> flags = {"--model", model_, "--out", dir_.Child("outputs/" + out),
                                      "--method", method, "--bits", "4", "--group-size", "32",
                                      "--calib-text", data_ + "/wikitext-2-raw/wiki.test.raw", "--nsamples", "4",
                                      "--calib-shards", "4", "--seqlen", "64", "--threads", "2"};
    if (method == "aespa") flags.insert(flags.end(), {"--aespa-adaround-iters", "20"});
    return flags;
  }
  JobSpec Spec(const std::string& method, const std::string& out) {
    JobSpec spec;
    spec.model_dir = model_;
    spec.out_dir = out;
    spec.method.method = method;
    spec.method.spec.bits = 4;
    spec.method.spec.group_size = 32;
    spec.calibration.text = data_ + "/wikitext-2-raw/wiki.test.raw";
    spec.calibration.nsamples = 4;
    spec.calibration.shards = 4;
    spec.calibration.seqlen = 64;
    spec.execution.threads = 2;
    if (method == "aespa") spec.method.aespa_adaround_iters = 20;
    return spec;
  }

  // The *.safetensors bytes of `dir`, by file name.
  static std::map<std::string, std::string> Tensors(const std::string& dir) {
    std::map<std::string, std::string> files = ReadDirectoryFiles(dir);
    std::erase_if(files, [](const auto& file) { return fs::path(file.first).extension() != ".safetensors"; });
    return files;
  }
  void ExpectSameBytesAsEmbedded(const std::string& method, const std::string& out) {
    const std::string embedded = dir_.Child("embedded-" + out);
    auto report = RunEmbeddedJob(Spec(method, embedded), JobEvents());
    ASSERT_TRUE(report.ok()) << report.status();
    const auto served = Tensors(dir_.Child("outputs/" + out));
    ASSERT_FALSE(served.empty());
    EXPECT_TRUE(served == Tensors(embedded)) << "the service's checkpoint differs from the embedded one";
  }

  // The job's status; UNSPECIFIED state while it does not exist (yet).
  v1::JobStatus Get(const std::string& job_id) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::GetJobRequest request;
    request.set_job_id(job_id);
    v1::JobStatus status;
    if (!stub_->GetJob(&context, request, &status).ok()) status.Clear();
    return status;
  }
  grpc::Status Submit(const v1::JobSpec& spec) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::SubmitJobRequest request;
    *request.mutable_spec() = spec;
    v1::SubmitJobResponse response;
    return stub_->SubmitJob(&context, request, &response);
  }

  ScopedTempDir dir_;
  std::string data_;
  std::string model_;  // the jobs' model
  int starts_ = 0;
  std::unique_ptr<Process> coordinator_;
  std::unique_ptr<v1::JobService::Stub> stub_;
};

// The whole service: a coordinator whose jobs run on three `qshard worker` processes, on
// TinyStories-656K (GPTQ, Z-Fold, aespa) and a synthetic OPT (GPTQ). The GPTQ job is validated,
// on a worker (--validate-on worker), into its JobStatus.
TEST_F(ServiceProcessTest, JobsRunOnWorkerProcessesWithTheEmbeddedBytes) {
  fs::create_directories(dir_.Child("outputs"));
  const std::string address = StartCoordinator("127.0.0.1:0", /*workers=*/3, {"--validate-on", "worker"});
  std::vector<std::unique_ptr<Process>> workers;
  for (int i = 0; i < 3; ++i)
    workers.push_back(std::make_unique<Process>(
        std::vector<std::string>{"worker", "--coordinator", address, "--name", absl::StrCat("w", i), "--threads", "1",
                                 "--retry-seconds", "5"},
        dir_.Child(absl::StrCat("worker-", i))));
  const auto run = [&](const std::string& method, const std::string& out, bool validated = false) {
    std::vector<std::string> args = {"submit", "--coordinator", address, "--wait", "--json"};
    const std::vector<std::string> job = JobFlags(method, out);
    args.insert(args.end(), job.begin(), job.end());
    if (validated)
      args.insert(args.end(), {"--validate-text", data_ + "/wikitext-2-raw/wiki.test.raw", "--validate-lines",
                               "2180-2400", "--validate-seqlen", "96", "--validate-windows", "2"});
    Process submit(args, dir_.Child("submit-" + out));
    ASSERT_EQ(submit.Wait(std::chrono::seconds(120)), 0) << ReadFileBytes(dir_.Child("submit-" + out + ".err"));
    EXPECT_EQ(nlohmann::json::parse(submit.Stdout())["state"], "SUCCEEDED");
    ExpectSameBytesAsEmbedded(method, out);
  };
  // Z-Fold and aespa solve their q/k/v and gate/up groups in two steps, the linears on
  // different worker processes.
  run("gptq", "gptq", /*validated=*/true);
  const v1::ValidationResult validation = Get("job-1").validation();
  EXPECT_GT(validation.perplexity(), 1.0);
  EXPECT_GT(validation.base_perplexity(), 1.0);
  EXPECT_GT(validation.top1_agreement(), 0.0);
  EXPECT_EQ(validation.device(), "cpu");
  EXPECT_EQ(validation.kernels(), "exact");
  EXPECT_NE(ReadFileBytes(dir_.Child("coordinator-1.err")).find("through the integer kernels of worker 0 (cpu)"),
            std::string::npos);
  for (const char* method : {"zfold", "aespa"}) run(method, method);
  model_ = WriteSyntheticOpt(2);
  run("gptq", "synthetic-opt-gptq");
  coordinator_->Kill(SIGTERM);
}

TEST_F(ServiceProcessTest, SubmitWaitGivesTheEmbeddedBytes) {
  fs::create_directories(dir_.Child("outputs"));
  const std::string address = StartCoordinator("127.0.0.1:0");
  std::vector<std::string> args = {"submit", "--coordinator", address, "--wait", "--json"};
  const std::vector<std::string> job = JobFlags("gptq", "gptq");
  args.insert(args.end(), job.begin(), job.end());
  Process submit(args, dir_.Child("submit"));
  ASSERT_EQ(submit.Wait(std::chrono::seconds(120)), 0) << ReadFileBytes(dir_.Child("submit.err"));
  EXPECT_EQ(nlohmann::json::parse(submit.Stdout())["state"], "SUCCEEDED");
  ExpectSameBytesAsEmbedded("gptq", "gptq");

  // `jobs` lists it; `cancel` of a finished job fails naming it.
  Process jobs({"jobs", "--coordinator", address, "--json"}, dir_.Child("jobs"));
  ASSERT_EQ(jobs.Wait(std::chrono::seconds(30)), 0);
  EXPECT_NE(jobs.Stdout().find("\"SUCCEEDED\""), std::string::npos) << jobs.Stdout();
  Process cancel({"cancel", "--coordinator", address, "job-1"}, dir_.Child("cancel"));
  EXPECT_EQ(cancel.Wait(std::chrono::seconds(30)), 1);
  EXPECT_NE(ReadFileBytes(dir_.Child("cancel.err")).find("job_id"), std::string::npos);
  coordinator_->Kill(SIGTERM);
}

TEST_F(ServiceProcessTest, HostileRequestsAndASigkilledCoordinatorLeaveTheJobIntact) {
  fs::create_directories(dir_.Child("outputs"));
  fs::create_symlink("/tmp", dir_.Child("outputs/link"));
  const std::string address = StartCoordinator("127.0.0.1:0");
  std::vector<std::string> args = {"submit", "--coordinator", address, "--wait", "--json",
                                   "--request-id", "release-1", "--reconnect-seconds", "60"};
  const std::vector<std::string> job = JobFlags("aespa", "aespa");
  args.insert(args.end(), job.begin(), job.end());
  Process submit(args, dir_.Child("submit"));

  const auto end = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < end && Get("job-1").state() != v1::JOB_STATE_RUNNING)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_EQ(Get("job-1").state(), v1::JOB_STATE_RUNNING);

  const v1::JobSpec good = JobSpecToProto(Spec("aespa", dir_.Child("outputs/other")));
  const auto expect = [&](v1::JobSpec spec, grpc::StatusCode code, const std::string& field) {
    const grpc::Status status = Submit(spec);
    EXPECT_EQ(status.error_code(), code) << field << ": " << status.error_message();
    EXPECT_NE(status.error_message().find(field), std::string::npos) << status.error_message();
  };
  v1::JobSpec spec = good;
  spec.mutable_quant()->set_method("nope");
  expect(spec, grpc::StatusCode::INVALID_ARGUMENT, "quant.method");
  for (int bits : {0, 9}) {
    spec = good;
    spec.mutable_quant()->set_bits(bits);
    expect(spec, grpc::StatusCode::INVALID_ARGUMENT, "quant.bits");
  }
  for (const std::string& out : {std::string("/tmp/qshard-outside"), dir_.Child("outputs/../escape"),
                                 dir_.Child("outputs/link/x")}) {
    spec = good;
    spec.set_output_path(out);
    const grpc::Status status = Submit(spec);
    EXPECT_TRUE(status.error_code() == grpc::StatusCode::PERMISSION_DENIED ||
                status.error_code() == grpc::StatusCode::INVALID_ARGUMENT)
        << out << ": " << status.error_message();
    EXPECT_NE(status.error_message().find("output_path"), std::string::npos) << status.error_message();
  }
  spec = good;
  spec.set_client_request_id("release-1");  // the running job's id, another spec
  expect(spec, grpc::StatusCode::ALREADY_EXISTS, "client_request_id");
  {
    grpc::ClientContext context;
    v1::GetJobRequest request;
    request.set_job_id("job-77");
    v1::JobStatus status;
    EXPECT_EQ(stub_->GetJob(&context, request, &status).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  const v1::JobStatus before_kill = Get("job-1");
  EXPECT_TRUE(before_kill.state() == v1::JOB_STATE_RUNNING) << before_kill.DebugString();

  // SIGKILL mid-job, then the same coordinator again: the job restarts and completes, and the
  // waiting submit reconnects and exits 0.
  coordinator_->Kill(SIGKILL);
  StartCoordinator(address);
  ASSERT_EQ(submit.Wait(std::chrono::seconds(180)), 0) << ReadFileBytes(dir_.Child("submit.err"));
  EXPECT_EQ(nlohmann::json::parse(submit.Stdout())["state"], "SUCCEEDED");
  coordinator_->Kill(SIGTERM);

  auto journal = Journal::Open(dir_.Child("state"));
  ASSERT_TRUE(journal.ok()) << journal.status();
  const auto history = (*journal)->History("job-1");
  ASSERT_TRUE(history.ok()) << history.status();
  std::vector<JobState> states;
  for (const StateChange& change : *history) states.push_back(change.to);
  EXPECT_EQ(states, (std::vector<JobState>{v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING, v1::JOB_STATE_QUEUED,
                                           v1::JOB_STATE_RUNNING, v1::JOB_STATE_SUCCEEDED}));
  const auto jobs = (*journal)->List(0, 100);
  ASSERT_TRUE(jobs.ok());
  EXPECT_EQ(jobs->size(), 1u);  // no hostile request made a job
  ExpectSameBytesAsEmbedded("aespa", "aespa");
}

// A coordinator killed mid-job with two worker processes: started again on the same state dir,
// it resumes after the layers it had finished (the workers reconnect and replay them) and
// solves only the rest; the bytes are the embedded job's.
TEST_F(ServiceProcessTest, ASigkilledCoordinatorResumesAfterItsFinishedLayers) {
  constexpr int kLayers = 3;
  model_ = WriteSyntheticOpt(kLayers);

  const std::string address = StartCoordinator("127.0.0.1:0", /*workers=*/2);
  std::vector<std::unique_ptr<Process>> workers;
  for (int i = 0; i < 2; ++i)
    workers.push_back(std::make_unique<Process>(
        std::vector<std::string>{"worker", "--coordinator", address, "--name", absl::StrCat("w", i), "--threads", "1",
                                 "--retry-seconds", "30"},
        dir_.Child(absl::StrCat("worker-", i))));
  std::vector<std::string> args = {"submit", "--coordinator", address, "--json"};
  const std::vector<std::string> job = JobFlags("gptq", "resumed");
  args.insert(args.end(), job.begin(), job.end());
  Process submit(args, dir_.Child("submit"));
  ASSERT_EQ(submit.Wait(std::chrono::seconds(30)), 0) << ReadFileBytes(dir_.Child("submit.err"));

  const auto end = Clock::now() + std::chrono::seconds(120);
  while (Clock::now() < end && Get("job-1").layers_done() < 1)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  coordinator_->Kill(SIGKILL);
  auto journal = Journal::Open(dir_.Child("state"));
  ASSERT_TRUE(journal.ok()) << journal.status();
  auto killed = (*journal)->Get("job-1");
  ASSERT_TRUE(killed.ok()) << killed.status();
  ASSERT_EQ(killed->state, v1::JOB_STATE_RUNNING) << "the job was not mid-way when the coordinator died";
  const int kept = killed->layers_done;
  ASSERT_GE(kept, 1);
  journal->reset();

  StartCoordinator(address, /*workers=*/2);
  const auto finish = Clock::now() + std::chrono::seconds(180);
  while (Clock::now() < finish && Get("job-1").state() != v1::JOB_STATE_SUCCEEDED &&
         Get("job-1").state() != v1::JOB_STATE_FAILED)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_EQ(Get("job-1").state(), v1::JOB_STATE_SUCCEEDED) << Get("job-1").error();
  coordinator_->Kill(SIGTERM);

  // The second coordinator restored the kept layers and solved only the others.
  const std::string log = ReadFileBytes(dir_.Child(absl::StrCat("coordinator-", starts_, ".err")));
  const auto count = [&](const std::string& text) {
    int n = 0;
    for (size_t at = log.find(text); at != std::string::npos; at = log.find(text, at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("restored from its kept solutions"), kept) << log;
  EXPECT_EQ(count(" done in "), kLayers - kept) << log;
  EXPECT_FALSE(fs::exists(dir_.Child("state/finished-layers/job-1"))) << "a finished job's kept layers stay";
  ExpectSameBytesAsEmbedded("gptq", "resumed");
}

}  // namespace
}  // namespace qshard
