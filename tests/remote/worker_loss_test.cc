// Worker processes (`qshard worker`) dial a WorkerPool served by this test; SIGKILL one or two
// of them while the job runs. The survivors adopt the lost shards, replay the finished layers,
// redo the current one, and the checkpoint's bytes equal the embedded job's; the engine reports each
// lost worker once to its JobObserver (the coordinator's metrics).
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <atomic>

#include "engine/job_runner.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "remote/worker_pool.h"
#include "tests/core/scoped_temp_dir.h"
#include "tests/engine/tiny_jobs.h"

extern char** environ;

namespace qshard {
namespace {

using testing::ReadFileBytes;

JobSpec SmallJob(const std::string& out) {
  JobSpec spec = tiny_jobs::Job("gptq", 3, out, /*nsamples=*/6, /*seqlen=*/64);
  spec.calibration.shards = 3;
  spec.execution.threads = 1;
  return spec;
}

pid_t SpawnWorker(int port, int index) {
  const std::string address = "127.0.0.1:" + std::to_string(port), name = "w" + std::to_string(index);
  std::vector<std::string> args = {QSHARD_BINARY, "worker", "--coordinator", address, "--name",
                                   name,          "--threads", "1", "--retry-seconds", "5"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  EXPECT_EQ(posix_spawn(&pid, QSHARD_BINARY, nullptr, nullptr, argv.data(), environ), 0);
  return pid;
}

// Counts what the engine tells the coordinator's metrics about losses.
struct LossCounter : JobObserver {
  std::atomic<int> lost = 0, redone = 0;
  void WorkerLost() override { ++lost; }
  void LayerRedone() override { ++redone; }
};

// Runs the job on three worker processes, killing `lost` of them once layer 0 is done.
void RunKillingWorkers(int lost) {
  testing::ScopedTempDir dir;
  ASSERT_TRUE(RunEmbeddedJob(SmallJob(dir.Child("embedded")), JobEvents()).ok());

  WorkerPoolOptions options;
  options.lease = std::chrono::milliseconds(3000);
  WorkerPool pool(options);
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&pool);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  std::vector<pid_t> pids;
  for (int i = 0; i < 3; ++i) pids.push_back(SpawnWorker(port, i));
  auto workers = pool.AwaitWorkers(3, std::chrono::seconds(30));
  ASSERT_TRUE(workers.ok()) << workers.status();
  std::vector<WorkerClient*> clients;
  for (auto& w : *workers) clients.push_back(w.get());

  JobEvents events;
  LossCounter losses;
  events.observer = &losses;
  std::vector<std::string> log;
  events.log = [&](const std::string& line) { log.push_back(line); };
  events.layer_done = [&](const LayerProgress& progress) {
    if (progress.layer != 0) return;
    for (int i = 0; i < lost; ++i) kill(pids[i], SIGKILL);
  };
  auto report = RunJob(SmallJob(dir.Child("remote")), clients, events);
  ASSERT_TRUE(report.ok()) << report.status();
  int adoptions = 0;
  for (const std::string& line : log) adoptions += line.find("adopts") != std::string::npos;
  EXPECT_GE(adoptions, 1);
  EXPECT_EQ(losses.lost, lost);  // each lost worker once, however many of its calls failed
  EXPECT_GE(losses.redone, 1);
  EXPECT_TRUE(ReadFileBytes(dir.Child("embedded") + "/model.safetensors") ==
              ReadFileBytes(dir.Child("remote") + "/model.safetensors"));

  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  for (pid_t pid : pids) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
}

TEST(WorkerLossTest, OneOfThreeKilledMidJobSameBytes) { RunKillingWorkers(1); }
TEST(WorkerLossTest, TwoOfThreeKilledMidJobSameBytes) { RunKillingWorkers(2); }

}  // namespace
}  // namespace qshard
