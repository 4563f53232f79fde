// Worker processes (`qshard worker`) dial a WorkerPool served by this test; SIGKILL one or two
// of them while the job runs. The survivors adopt the lost shards, replay the finished layers,
// redo the current one, and the checkpoint's bytes equal the embedded job's; the engine reports each
// lost worker once to its JobObserver (the coordinator's metrics). Also a worker killed as a
// group's owner comes to pull its partials (the owner-reduction path), and a worker killed while
// it validates the finished checkpoint (--validate-on worker): the next worker validates.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <atomic>
#include <functional>
#include <set>

#include "engine/job_runner.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "remote/worker_pool.h"
#include "tests/core/scoped_temp_dir.h"
#include "tests/engine/forwarding_worker.h"
#include "tests/engine/tiny_jobs.h"

extern char** environ;

namespace qshard {
namespace {

using testing::ReadFileBytes;

// aespa (few AdaRound steps) splits q/k/v by head over three workers; GPTQ by linear.
JobSpec SmallJob(const std::string& out, const std::string& method = "gptq") {
  JobSpec spec = tiny_jobs::Job(method, 3, out, /*nsamples=*/6, /*seqlen=*/64);
  spec.calibration.shards = 3;
  spec.execution.threads = 1;
  spec.method.aespa_adaround_iters = 20;
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

// A WorkerPool on a loopback port (3 s leases) and three `qshard worker` processes that
// registered with it; the processes are killed and reaped at the end.
struct ThreeWorkerProcesses {
  ThreeWorkerProcesses() : pool(Leases()) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&pool);
    server = builder.BuildAndStart();
    for (int i = 0; i < 3; ++i) pids.push_back(SpawnWorker(port, i));
    workers = pool.AwaitWorkers(3, std::chrono::seconds(30));
    if (workers.ok())
      for (auto& w : *workers) clients.push_back(w.get());
  }
  ~ThreeWorkerProcesses() {
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    for (pid_t pid : pids) Kill(pid);
  }
  static WorkerPoolOptions Leases() {
    WorkerPoolOptions options;
    options.lease = std::chrono::milliseconds(3000);
    return options;
  }
  // The process of the worker serving data at `address` (clients come in the order the workers
  // connected, not w0, w1, w2); 0 if none does.
  pid_t PidOfAddress(const std::string& address) {
    for (const v1::WorkerHello& hello : pool.Workers())
      if (hello.data_address() == address) return pids[hello.name().back() - '0'];
    return 0;
  }
  // SIGKILLs `pid` and reaps it (once).
  void Kill(pid_t pid) {
    if (!reaped.insert(pid).second) return;
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }

  WorkerPool pool;
  int port = 0;
  std::unique_ptr<grpc::Server> server;
  std::vector<pid_t> pids;  // of workers w0, w1, w2
  std::set<pid_t> reaped;
  absl::StatusOr<std::vector<std::unique_ptr<WorkerClient>>> workers;
  std::vector<WorkerClient*> clients;
};

// Runs the job on three worker processes, killing `lost` of them once layer 0 is done.
void RunKillingWorkers(int lost) {
  testing::ScopedTempDir dir;
  ASSERT_TRUE(RunEmbeddedJob(SmallJob(dir.Child("embedded")), JobEvents()).ok());
  ThreeWorkerProcesses cluster;
  ASSERT_TRUE(cluster.workers.ok()) << cluster.workers.status();

  JobEvents events;
  LossCounter losses;
  events.observer = &losses;
  std::vector<std::string> log;
  events.log = [&](const std::string& line) { log.push_back(line); };
  events.layer_done = [&](const LayerProgress& progress) {
    if (progress.layer != 0) return;
    for (int i = 0; i < lost; ++i) kill(cluster.pids[i], SIGKILL);
  };
  auto report = RunJob(SmallJob(dir.Child("remote")), cluster.clients, events);
  ASSERT_TRUE(report.ok()) << report.status();
  int adoptions = 0;
  for (const std::string& line : log) adoptions += line.find("adopts") != std::string::npos;
  EXPECT_GE(adoptions, 1);
  EXPECT_EQ(losses.lost, lost);  // each lost worker once, however many of its calls failed
  EXPECT_GE(losses.redone, 1);
  EXPECT_TRUE(ReadFileBytes(dir.Child("embedded") + "/model.safetensors") ==
              ReadFileBytes(dir.Child("remote") + "/model.safetensors"));
}

// Once `armed`, kills (through `kill_holder`) a worker whose statistics this one is about to
// read — when reducing, a holder of partials; when solving a part of a group (or a run of
// heads), the group's owner — so the read finds it gone; every call is passed on.
class KillingAHolder : public testing::ForwardingWorker {
 public:
  enum class When { kReducing, kSolvingAPart, kSolvingARunOfHeads };
  KillingAHolder(WorkerClient& inner, When when, std::atomic<bool>& armed,
                 std::function<void(const std::string&)> kill_holder)
      : ForwardingWorker(inner), when_(when), armed_(armed), kill_holder_(std::move(kill_holder)) {}

  absl::Status ReduceStatistics(int group, int shards, const std::vector<StatisticsSource>& sources,
                                std::optional<size_t>* unreachable) override {
    for (const StatisticsSource& source : sources)
      if (when_ == When::kReducing) KillIfArmed(source.address);
    return inner_.ReduceStatistics(group, shards, sources, unreachable);
  }
  absl::StatusOr<GroupSolution> Solve(int group, const std::vector<std::string>& linears,
                                      const GroupStatistics* statistics, const SharedGroupPart* shared) override {
    if (when_ == When::kSolvingAPart && statistics != nullptr) KillIfArmed(statistics->held_at);
    return inner_.Solve(group, linears, statistics, shared);
  }
  absl::StatusOr<std::vector<HeadsPart>> SolveHeads(int group, const std::vector<HeadRange>& ranges,
                                                    const GroupStatistics* statistics,
                                                    const SharedGroupPart& shared) override {
    if (when_ == When::kSolvingARunOfHeads && statistics != nullptr) KillIfArmed(statistics->held_at);
    return inner_.SolveHeads(group, ranges, statistics, shared);
  }

 private:
  void KillIfArmed(const std::string& holder) {
    if (holder != inner_.DataAddress() && armed_.exchange(false)) kill_holder_(holder);
  }

  const When when_;
  std::atomic<bool>& armed_;
  std::function<void(const std::string&)> kill_holder_;
};

// Runs the job on three worker processes; in layer 1 a worker whose statistics another is
// about to read dies (`when`). It is lost like any other (its shards move, the layer is redone,
// the statistics collected again), not the reader, and the bytes are the embedded job's.
void RunKillingAHolder(KillingAHolder::When when, const std::string& method = "gptq") {
  testing::ScopedTempDir dir;
  ASSERT_TRUE(RunEmbeddedJob(SmallJob(dir.Child("embedded"), method), JobEvents()).ok());
  ThreeWorkerProcesses cluster;
  ASSERT_TRUE(cluster.workers.ok()) << cluster.workers.status();
  for (WorkerClient* w : cluster.clients) ASSERT_NE(cluster.PidOfAddress(w->DataAddress()), 0);
  std::atomic<bool> armed = false;
  std::atomic<int> killed = 0;
  std::vector<std::unique_ptr<KillingAHolder>> wrapped;
  std::vector<WorkerClient*> clients;
  for (WorkerClient* w : cluster.clients)
    clients.push_back(wrapped.emplace_back(std::make_unique<KillingAHolder>(*w, when, armed, [&](const std::string& address) {
      cluster.Kill(cluster.PidOfAddress(address));
      ++killed;
    })).get());

  JobEvents events;
  LossCounter losses;
  events.observer = &losses;
  std::vector<std::string> log;
  events.log = [&](const std::string& line) { log.push_back(line); };
  events.layer_done = [&](const LayerProgress& progress) { armed = progress.layer == 0; };
  auto report = RunJob(SmallJob(dir.Child("remote"), method), clients, events);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(killed, 1);
  EXPECT_EQ(losses.lost, 1);
  EXPECT_GE(losses.redone, 1);
  EXPECT_TRUE(ReadFileBytes(dir.Child("embedded") + "/model.safetensors") ==
              ReadFileBytes(dir.Child("remote") + "/model.safetensors"));
}

// A holder of partials dies as the group's owner comes to pull them: the reduction names it.
TEST(WorkerLossTest, HolderKilledAsItsOwnerPullsSameBytes) { RunKillingAHolder(KillingAHolder::When::kReducing); }
// A group's owner dies as another worker comes to read its reduced statistics for a part of
// the group (GPTQ's q/k/v are split over the three workers).
TEST(WorkerLossTest, OwnerKilledAsASolverReadsItsStatisticsSameBytes) {
  RunKillingAHolder(KillingAHolder::When::kSolvingAPart);
}
// The same for a run of aespa's q/k/v heads (SolveHeads reads the owner's statistics too).
TEST(WorkerLossTest, OwnerKilledAsAHeadRunSolverReadsItsStatisticsSameBytes) {
  RunKillingAHolder(KillingAHolder::When::kSolvingARunOfHeads, "aespa");
}

TEST(WorkerLossTest, OneOfThreeKilledMidJobSameBytes) { RunKillingWorkers(1); }
TEST(WorkerLossTest, TwoOfThreeKilledMidJobSameBytes) { RunKillingWorkers(2); }

}  // namespace
}  // namespace qshard

namespace qshard {
namespace {

// The first worker process is SIGKILLed as it is asked to validate: the next one validates,
// with the numbers the coordinator's own validation has.
TEST(WorkerLossTest, KilledAsItValidatesTheNextWorkerValidates) {
  testing::ScopedTempDir dir;
  const auto validated = [&](const std::string& out) {
    JobSpec spec = SmallJob(dir.Child(out));
    spec.validation.text = tiny_jobs::kText;
    spec.validation.lines = {2180, 2400};
    spec.validation.seqlen = 96;
    spec.validation.max_windows = 3;
    return spec;
  };
  ThreeWorkerProcesses cluster;
  ASSERT_TRUE(cluster.workers.ok()) << cluster.workers.status();
  auto on_coordinator = RunJob(validated("coordinator"), cluster.clients, JobEvents());
  ASSERT_TRUE(on_coordinator.ok()) << on_coordinator.status();

  JobEvents events;
  std::vector<std::string> log;
  events.log = [&](const std::string& line) {
    log.push_back(line);
    // Logged just before its validate task goes out (a tiny model validates in milliseconds).
    if (line.find("through the integer kernels of worker 0") != std::string::npos)
      cluster.Kill(cluster.PidOfAddress(cluster.clients[0]->DataAddress()));
  };
  auto on_worker = RunJob(validated("worker"), cluster.clients, events, ValidationSite::OnWorker());
  ASSERT_TRUE(on_worker.ok()) << on_worker.status();
  EXPECT_EQ((*on_worker)["validation"], (*on_coordinator)["validation"]);
  bool handed_on = false;
  for (const std::string& line : log) handed_on = handed_on || line.find("validation: worker 0 (cpu) lost") == 0;
  EXPECT_TRUE(handed_on);
}

}  // namespace
}  // namespace qshard
