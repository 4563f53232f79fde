// The final validation delegated to a worker (--validate-on worker): over gRPC, a worker runs
// ValidateCheckpoint on its own device and its report is the coordinator's to the bit (the CPU
// here); a job whose workers lack the device asked for is refused before any work; a worker
// lost while validating hands it to the next, and a rerun after a coordinator restart
// restores the kept layers and only validates again.
#include <filesystem>
#include <string>
#include <vector>

#include "engine/finished_layers.h"
#include "engine/job_runner.h"
#include "gtest/gtest.h"
#include "tests/core/scoped_temp_dir.h"
#include "tests/engine/forwarding_worker.h"
#include "tests/engine/tiny_jobs.h"
#include "tests/remote/in_process_cluster.h"

namespace qshard {
namespace {

using nlohmann::json;
using testing::Cluster;

JobSpec ValidatedJob(const std::string& out) {
  JobSpec spec = tiny_jobs::Job("gptq", 4, out, /*nsamples=*/4, /*seqlen=*/64);
  spec.calibration.shards = 2;
  spec.execution.threads = 1;
  spec.validation.text = tiny_jobs::kText;
  spec.validation.lines = {2180, 2400};
  spec.validation.seqlen = 96;
  spec.validation.max_windows = 3;
  return spec;
}

// A worker whose Validate fails as a lost worker's when told to; it counts the validations and
// solves it is asked for, and notes the job's step (`steps`' last) while it validates.
class LosingWorker : public testing::ForwardingWorker {
 public:
  using ForwardingWorker::ForwardingWorker;
  bool lost_in_validation = false;
  int validations = 0, solves = 0;
  const std::vector<std::string>* steps = nullptr;
  std::string step_while_validating;

  absl::StatusOr<json> Validate(const JobSpec& spec) override {
    ++validations;
    if (steps != nullptr && !steps->empty()) step_while_validating = steps->back();
    if (lost_in_validation) return absl::UnavailableError("worker lost");
    return inner_.Validate(spec);
  }
  absl::StatusOr<GroupSolution> Solve(int group, const std::vector<std::string>& linears,
                                      const GroupStatistics* statistics, const SharedGroupPart* shared) override {
    ++solves;
    return inner_.Solve(group, linears, statistics, shared);
  }
};

struct Workers {
  explicit Workers(Cluster& cluster, int count) {
    auto remote = cluster.pool().AwaitWorkers(count, std::chrono::seconds(20));
    EXPECT_TRUE(remote.ok()) << remote.status();
    if (!remote.ok()) return;
    owned = std::move(*remote);
    for (auto& worker : owned) wrapped.push_back(std::make_unique<LosingWorker>(*worker));
    for (auto& worker : wrapped) clients.push_back(worker.get());
  }
  std::vector<std::unique_ptr<WorkerClient>> owned;
  std::vector<std::unique_ptr<LosingWorker>> wrapped;
  std::vector<WorkerClient*> clients;
};

// Two workers over loopback gRPC, wrapped to count and to lose their validations.
class WorkerValidationTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(workers_.clients.size(), 2u); }
  // The job on the workers, validated on the runner's CPU.
  json OnTheCoordinator(const std::string& out) {
    auto report = RunJob(ValidatedJob(dir_.Child(out)), workers_.clients, JobEvents());
    EXPECT_TRUE(report.ok()) << report.status();
    return report.ok() ? (*report)["validation"] : json();
  }

  testing::ScopedTempDir dir_;
  Cluster cluster_{2};
  Workers workers_{cluster_, 2};
};

bool Logged(const std::vector<std::string>& log, const std::string& part) {
  for (const std::string& line : log)
    if (line.find(part) != std::string::npos) return true;
  return false;
}

// The validation numbers of the same checkpoint, on the coordinator and on a worker, both on
// the CPU: every field equal, doubles to the bit (JSON carries them in round-trip digits).
TEST_F(WorkerValidationTest, OnAWorkerEqualsOnTheCoordinator) {
  const json expected = OnTheCoordinator("coordinator");
  JobEvents events;
  std::vector<std::string> log, steps;
  events.log = [&](const std::string& line) { log.push_back(line); };
  tiny_jobs::RecordSteps(events, steps);
  workers_.wrapped[0]->steps = &steps;
  auto on_worker = RunJob(ValidatedJob(dir_.Child("worker")), workers_.clients, events, ValidationSite::OnWorker());
  ASSERT_TRUE(on_worker.ok()) << on_worker.status();
  // WatchJob shows the job validating while the worker validates, after writing the checkpoint.
  EXPECT_EQ(workers_.wrapped[0]->step_while_validating, "2/2 validating ");
  ASSERT_GE(steps.size(), 2u);
  EXPECT_EQ(steps[steps.size() - 2], "2/2 writing ");
  const json& got = (*on_worker)["validation"];
  ASSERT_TRUE(expected.is_object());
  for (const char* field : {"perplexity", "base_perplexity", "kl_divergence", "top1_agreement"}) {
    ASSERT_TRUE(got[field].is_number_float()) << field;
    EXPECT_EQ(got[field].get<double>(), expected[field].get<double>()) << field;  // bit for bit
  }
  EXPECT_EQ(got, expected);  // text, lines, seqlen, windows, kernels too
  EXPECT_TRUE(Logged(log, "through the integer kernels of worker 0 (cpu)"));
  EXPECT_EQ(workers_.wrapped[0]->validations, 1);
  EXPECT_EQ(workers_.wrapped[1]->validations, 0);
  // The stored report has it as the returned one.
  EXPECT_EQ(json::parse(testing::ReadFileBytes(dir_.Child("worker") + "/quant_report.json"))["validation"], expected);
}

// Workers on the CPU cannot validate where CUDA is asked for: refused before the job starts —
// nothing solved, no output written.
TEST_F(WorkerValidationTest, NoWorkerWithTheDeviceIsRefusedBeforeTheJobStarts) {
  auto refused = RunJob(ValidatedJob(dir_.Child("out")), workers_.clients, JobEvents(),
                        ValidationSite::OnWorker(Device::Kind::kCuda));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("--validate-device cuda"), std::string::npos) << refused.status();
  EXPECT_NE(refused.status().message().find("[\"cpu\",\"cpu\"]"), std::string::npos) << refused.status();
  EXPECT_FALSE(std::filesystem::exists(dir_.Child("out")));
  EXPECT_EQ(workers_.wrapped[0]->solves + workers_.wrapped[1]->solves, 0);
  // Asking for the kind they have is fine.
  auto accepted = RunJob(ValidatedJob(dir_.Child("cpu")), workers_.clients, JobEvents(),
                         ValidationSite::OnWorker(Device::Kind::kCpu));
  ASSERT_TRUE(accepted.ok()) << accepted.status();
  EXPECT_TRUE((*accepted)["validation"].is_object());
}

// The first worker is lost while validating: the second validates, with the same numbers. With
// every worker lost the job fails UNAVAILABLE, its checkpoint written; rerun with the kept
// layers (a coordinator restart) it solves nothing again and validates.
TEST_F(WorkerValidationTest, AWorkerLostWhileValidatingHandsItOnAndARestartOnlyValidatesAgain) {
  const json reference = OnTheCoordinator("reference");
  ASSERT_TRUE(reference.is_object());

  workers_.wrapped[0]->lost_in_validation = true;
  JobEvents events;
  std::vector<std::string> log;
  events.log = [&](const std::string& line) { log.push_back(line); };
  auto handed_on = RunJob(ValidatedJob(dir_.Child("handed-on")), workers_.clients, events, ValidationSite::OnWorker());
  ASSERT_TRUE(handed_on.ok()) << handed_on.status();
  EXPECT_EQ((*handed_on)["validation"], reference);
  EXPECT_EQ(workers_.wrapped[0]->validations, 1);
  EXPECT_EQ(workers_.wrapped[1]->validations, 1);
  EXPECT_TRUE(Logged(log, "validation: worker 0 (cpu) lost: worker lost"));

  // Every worker lost: the kept layers outlive the failed run, as they outlive a crash.
  workers_.wrapped[1]->lost_in_validation = true;
  FinishedLayersInMemory kept;
  JobEvents keeping;
  keeping.finished_layers = &kept;
  auto failed = RunJob(ValidatedJob(dir_.Child("restarted")), workers_.clients, keeping, ValidationSite::OnWorker());
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(failed.status().message().find("every worker of the job was lost"), std::string::npos) << failed.status();

  // The restarted coordinator's run (the scheduler clears the output first): fresh workers.
  std::filesystem::remove_all(dir_.Child("restarted"));
  Workers fresh(cluster_, 2);
  ASSERT_EQ(fresh.clients.size(), 2u);
  auto restarted = RunJob(ValidatedJob(dir_.Child("restarted")), fresh.clients, keeping, ValidationSite::OnWorker());
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  EXPECT_EQ(fresh.wrapped[0]->solves + fresh.wrapped[1]->solves, 0);  // every layer restored
  EXPECT_EQ((*restarted)["validation"], reference);
  EXPECT_TRUE(testing::ReadFileBytes(dir_.Child("reference") + "/model.safetensors") ==
              testing::ReadFileBytes(dir_.Child("restarted") + "/model.safetensors"));
}

}  // namespace
}  // namespace qshard
