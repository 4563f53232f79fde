// A job that dies after finishing some layers and is run again with the same kept layers
// (the coordinator's FinishedLayerDir) skips them, solving only the rest, and writes the bytes
// of an uninterrupted run: for one and for three workers, sequential and parallel propagation,
// and Z-Fold's rewrites, with every log line told on the job's own thread. A damaged layer
// file ends the kept run there.
#include "coordinator/finished_layer_dir.h"

#include <atomic>
#include <fstream>
#include <thread>

#include "engine/job_runner.h"
#include "engine/local_worker.h"
#include "gtest/gtest.h"
#include "tests/core/scoped_temp_dir.h"
#include "tests/engine/tiny_jobs.h"

namespace qshard {
namespace {

using testing::ReadFileBytes;

JobSpec SmallJob(const std::string& method, const std::string& out) {
  JobSpec spec = tiny_jobs::Job(method, 3, out, /*nsamples=*/6, /*seqlen=*/64);
  spec.calibration.shards = 3;
  spec.execution.threads = 1;
  return spec;
}

// Keeps layers in a FinishedLayerDir, and fails the job (as a crash would) when asked to keep
// layer `crash_at`.
class CrashingStore : public FinishedLayerStore {
 public:
  CrashingStore(const std::string& dir, int crash_at) : kept_(dir), crash_at_(crash_at) {}
  absl::StatusOr<int> CountKept() override { return kept_.CountKept(); }
  absl::StatusOr<std::vector<GroupSolution>> Load(int layer) override { return kept_.Load(layer); }
  absl::Status Save(int layer, const std::vector<GroupSolution>& solutions) override {
    if (layer == crash_at_) return absl::AbortedError("crashed");
    return kept_.Save(layer, solutions);
  }

 private:
  FinishedLayerDir kept_;
  int crash_at_;
};

struct Run {
  absl::StatusOr<nlohmann::json> report;
  std::vector<std::string> log;
};

Run RunOn(int workers, const JobSpec& spec, FinishedLayerStore& store) {
  std::vector<std::unique_ptr<LocalWorker>> owned;
  std::vector<WorkerClient*> clients;
  for (int i = 0; i < workers; ++i) {
    owned.push_back(std::make_unique<LocalWorker>(1, /*restartable=*/workers > 1));
    clients.push_back(owned.back().get());
  }
  Run run;
  JobEvents events;
  // JobEvents promises its callbacks the job's thread, so this push_back takes no lock: one
  // made from the workers' threads (once, the resumed workers' "adopts" lines) raced and
  // corrupted the heap now and then. Counted here, such a call fails the test every time.
  const std::thread::id job_thread = std::this_thread::get_id();
  std::atomic<int> elsewhere = 0;
  events.log = [&](const std::string& line) {
    if (std::this_thread::get_id() != job_thread) ++elsewhere;
    run.log.push_back(line);
  };
  events.finished_layers = &store;
  run.report = RunJob(spec, clients, events);
  EXPECT_EQ(elsewhere.load(), 0) << "log lines from a thread other than the job's";
  return run;
}

int LinesWith(const std::vector<std::string>& log, const std::string& text) {
  int n = 0;
  for (const std::string& line : log) n += line.find(text) != std::string::npos;
  return n;
}

void ExpectResumeSkipsTheKeptLayer(const std::string& method, Propagation propagation, int workers) {
  testing::ScopedTempDir dir;
  JobSpec spec = SmallJob(method, dir.Child("embedded"));
  spec.calibration.propagation = propagation;
  ASSERT_TRUE(RunEmbeddedJob(spec, JobEvents()).ok());

  spec.out_dir = dir.Child("resumed");
  CrashingStore crashing(dir.Child("kept"), /*crash_at=*/1);
  const Run first = RunOn(workers, spec, crashing);
  ASSERT_EQ(first.report.status().code(), absl::StatusCode::kAborted) << first.report.status();
  std::filesystem::remove_all(spec.out_dir);  // what the coordinator does before resuming

  FinishedLayerDir kept(dir.Child("kept"));
  EXPECT_EQ(kept.CountKept().value_or(-1), 1);
  const Run second = RunOn(workers, spec, kept);
  ASSERT_TRUE(second.report.ok()) << second.report.status();
  EXPECT_EQ(LinesWith(second.log, "resuming: layers 1-1"), 1);
  EXPECT_EQ(LinesWith(second.log, "layer 1/2 restored from its kept solutions"), 1);
  EXPECT_EQ(LinesWith(second.log, "layer 1/2 done"), 0);
  EXPECT_EQ(LinesWith(second.log, "layer 2/2 done"), 1);
  EXPECT_EQ(LinesWith(second.log, "layer 1/2 q_proj"), 0) << "layer 1 was solved again";
  EXPECT_EQ(kept.CountKept().value_or(-1), 2);
  EXPECT_EQ((*second.report)["modules"].size(), 14u);  // both layers' reports
  EXPECT_TRUE(ReadFileBytes(dir.Child("embedded") + "/model.safetensors") ==
              ReadFileBytes(dir.Child("resumed") + "/model.safetensors"));
}

TEST(FinishedLayerDirTest, GptqOnOneWorkerResumesWithTheSameBytes) {
  ExpectResumeSkipsTheKeptLayer("gptq", Propagation::kSequential, 1);
}
TEST(FinishedLayerDirTest, GptqOnThreeWorkersResumesWithTheSameBytes) {
  ExpectResumeSkipsTheKeptLayer("gptq", Propagation::kSequential, 3);
}
TEST(FinishedLayerDirTest, ParallelPropagationResumesWithTheSameBytes) {
  ExpectResumeSkipsTheKeptLayer("gptq", Propagation::kParallel, 2);
}
TEST(FinishedLayerDirTest, ZfoldRewritesResumeWithTheSameBytes) {
  ExpectResumeSkipsTheKeptLayer("zfold", Propagation::kSequential, 2);
}

TEST(FinishedLayerDirTest, ADamagedLayerEndsTheKeptRun) {
  testing::ScopedTempDir dir;
  FinishedLayerDir kept(dir.Child("kept"));
  GroupSolution solution;
  solution.reports.push_back({"q_proj", 0.5, 1.0, 0.01, 0});
  for (int layer = 0; layer < 3; ++layer) ASSERT_TRUE(kept.Save(layer, {solution, solution}).ok());
  std::ofstream(dir.Child("kept/layer-00001.pb"), std::ios::trunc) << "\xff\xff not a proto";
  EXPECT_EQ(kept.CountKept().value_or(-1), 1);
  EXPECT_EQ(kept.Load(1).status().code(), absl::StatusCode::kDataLoss);
  auto layer = kept.Load(0);
  ASSERT_TRUE(layer.ok()) << layer.status();
  ASSERT_EQ(layer->size(), 2u);
  EXPECT_EQ((*layer)[1].reports[0].name, "q_proj");
  EXPECT_EQ((*layer)[1].reports[0].relative_error, 0.5);
  ASSERT_TRUE(kept.Remove().ok());
  EXPECT_EQ(kept.CountKept().value_or(-1), 0);
  EXPECT_TRUE(kept.Remove().ok());  // nothing left to remove is fine
}

}  // namespace
}  // namespace qshard
