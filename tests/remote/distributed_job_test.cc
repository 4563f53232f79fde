// The engine over gRPC: a WorkerPool on a loopback port, workers dialling it (in threads of
// this process, each with its own LocalWorker), and RunJob driving them. The checkpoint's
// bytes equal the embedded job's with the same spec, whatever the number of workers.
#include <atomic>
#include <cstdio>
#include <thread>

#include "core/status.h"
#include "engine/job_runner.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/core/scoped_temp_dir.h"
#include "tests/engine/forwarding_worker.h"
#include "tests/engine/tiny_jobs.h"
#include "tests/remote/in_process_cluster.h"

namespace qshard {
namespace {

using testing::Cluster;
using testing::ReadFileBytes;

JobSpec SmallJob(const std::string& method, const std::string& out, int group_size,
                 Propagation propagation = Propagation::kSequential) {
  JobSpec spec = tiny_jobs::Job(method, 3, out, /*nsamples=*/6, /*seqlen=*/64);
  spec.calibration.propagation = propagation;
  spec.method.spec.group_size = group_size;
  spec.method.zfold_max_iters = 4;
  spec.method.aespa_adaround_iters = 20;
  spec.execution.threads = 1;
  spec.execution.batch_windows = 2;
  if (method == "flattenquant") {  // W4A4/W8A8 per tensor, per-channel grids only
    spec.method.spec.bits = 4;
    spec.method.spec.group_size = -1;
  }
  return spec;
}

// A worker that counts the two-step and per-head solves and the reductions it is given, and
// passes every call on.
class CountingWorker : public testing::ForwardingWorker {
 public:
  using ForwardingWorker::ForwardingWorker;
  int shared_solves = 0;   // SolveShared calls
  int linear_solves = 0;   // Solve calls given a shared part
  int head_solves = 0;     // SolveHeads calls
  int reductions = 0;      // groups reduced as their owner
  bool dies_in_heads = false;  // its first SolveHeads, and every call after, fail as a lost worker's

  absl::Status StartJob(const JobSpec& spec, int64_t seqlen, std::vector<int> shards) override {
    QSHARD_RETURN_IF_ERROR(Alive());
    return inner_.StartJob(spec, seqlen, std::move(shards));
  }
  absl::Status BeginLayer(int layer) override { return Alive().ok() ? inner_.BeginLayer(layer) : Alive(); }
  absl::StatusOr<std::vector<ShardStatistics>> CollectStatistics(const std::vector<int>& groups,
                                                                 bool attention) override {
    QSHARD_RETURN_IF_ERROR(Alive());
    return inner_.CollectStatistics(groups, attention);
  }
  absl::Status ReduceStatistics(int group, int shards, const std::vector<StatisticsSource>& sources,
                                std::optional<size_t>* unreachable) override {
    ++reductions;
    QSHARD_RETURN_IF_ERROR(Alive());
    return inner_.ReduceStatistics(group, shards, sources, unreachable);
  }
  absl::StatusOr<GroupSolution> Solve(int group, const std::vector<std::string>& linears,
                                      const GroupStatistics* statistics, const SharedGroupPart* shared) override {
    linear_solves += shared != nullptr ? 1 : 0;
    QSHARD_RETURN_IF_ERROR(Alive());
    return inner_.Solve(group, linears, statistics, shared);
  }
  absl::StatusOr<SharedGroupPart> SolveShared(int group, const GroupStatistics* statistics) override {
    ++shared_solves;
    QSHARD_RETURN_IF_ERROR(Alive());
    return inner_.SolveShared(group, statistics);
  }
  absl::StatusOr<std::vector<HeadsPart>> SolveHeads(int group, const std::vector<HeadRange>& ranges,
                                                    const GroupStatistics* statistics,
                                                    const SharedGroupPart& shared) override {
    ++head_solves;
    if (dies_in_heads) dead_ = true;
    QSHARD_RETURN_IF_ERROR(Alive());
    return inner_.SolveHeads(group, ranges, statistics, shared);
  }
  absl::Status Apply(int group, const GroupSolution& solution) override {
    return Alive().ok() ? inner_.Apply(group, solution) : Alive();
  }
  absl::Status FinishLayer() override { return Alive().ok() ? inner_.FinishLayer() : Alive(); }

 private:
  absl::Status Alive() const { return dead_ ? absl::UnavailableError("worker lost") : absl::OkStatus(); }

  bool dead_ = false;
};

// `skip`: linears kept in full precision; Z-Fold and aespa then solve in two steps the groups
// with several quantized linears left, whose numbers are `two_step_groups`. `head_parts`: the
// workers aespa's attention group (the first of them) is split over by head per layer, 0 when
// it splits by linear.
void ExpectSameBytesAsEmbedded(const std::string& method, int workers, int group_size = 32,
                               Propagation propagation = Propagation::kSequential,
                               const std::vector<std::string>& skip = {},
                               const std::vector<int>& two_step_groups = {3, 2}, int head_parts = 0) {
  testing::ScopedTempDir dir;
  const auto job = [&](const std::string& out) {
    JobSpec spec = SmallJob(method, out, group_size, propagation);
    spec.skip = skip;
    return spec;
  };
  JobEvents embedded_events, remote_events;
  std::vector<std::string> embedded_steps, remote_steps;  // what WatchJob shows, step by step
  tiny_jobs::RecordSteps(embedded_events, embedded_steps);
  tiny_jobs::RecordSteps(remote_events, remote_steps);
  ASSERT_TRUE(RunEmbeddedJob(job(dir.Child("embedded")), embedded_events).ok());
  Cluster cluster(workers);
  auto remote = cluster.pool().AwaitWorkers(workers, std::chrono::seconds(20));
  ASSERT_TRUE(remote.ok()) << remote.status();
  std::vector<std::unique_ptr<CountingWorker>> counted;
  std::vector<WorkerClient*> clients;
  for (auto& worker : *remote) clients.push_back(counted.emplace_back(std::make_unique<CountingWorker>(*worker)).get());
  auto report = RunJob(job(dir.Child("remote")), clients, remote_events);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_FALSE(embedded_steps.empty());
  EXPECT_EQ(remote_steps, embedded_steps) << method << " on " << workers;
  // Z-Fold's and aespa's groups of several linears (q/k/v, and gate/up on this LLaMA-shaped
  // model) are solved in two steps once there are two workers: the shared part on one, the
  // linears on as many workers as they are — or, by head, on more.
  int shared_solves = 0, linear_solves = 0, head_solves = 0, workers_solving_linears = 0;
  for (const auto& worker : counted) {
    shared_solves += worker->shared_solves;
    linear_solves += worker->linear_solves;
    head_solves += worker->head_solves;
    workers_solving_linears += worker->linear_solves + worker->head_solves > 0 ? 1 : 0;
  }
  const int layers = (*report)["plan"]["layers"].get<int>();
  const bool two_step = (method == "zfold" || method == "aespa") && workers > 1;
  int parts = 0, most_parts = head_parts;
  for (size_t g = head_parts > 0 ? 1 : 0; g < two_step_groups.size(); ++g) {
    parts += std::min(workers, two_step_groups[g]);
    most_parts = std::max(most_parts, std::min(workers, two_step_groups[g]));
  }
  EXPECT_EQ(shared_solves, two_step ? static_cast<int>(two_step_groups.size()) * layers : 0) << method << " on " << workers;
  EXPECT_GE(workers_solving_linears, two_step ? most_parts : 0) << method << " on " << workers;
  EXPECT_EQ(linear_solves, two_step ? layers * parts : 0) << method << " on " << workers;
  EXPECT_EQ(head_solves, layers * head_parts) << method << " on " << workers;
  const std::string embedded = ReadFileBytes(dir.Child("embedded") + "/model.safetensors");
  ASSERT_FALSE(embedded.empty());
  EXPECT_TRUE(embedded == ReadFileBytes(dir.Child("remote") + "/model.safetensors")) << method << " on " << workers;

  // The plan's traffic (engine/job_plan.h) is what crossed the wire, within the framing of tasks
  // and slices: statistics between the workers, solutions through the coordinator.
  const nlohmann::json& per_layer = (*report)["plan"]["network_bytes_per_layer"];
  const double layers_planned = (*report)["plan"]["layers"].get<double>();
  const double planned_statistics = per_layer["statistics"].get<double>() * layers_planned;
  const double planned = planned_statistics + per_layer["solutions"].get<double>() * layers_planned;
  const double through_coordinator = cluster.pool().bytes_to_workers() + cluster.pool().bytes_from_workers();
  const double moved = through_coordinator + cluster.data_bytes();
  // FineQuant's refined group sizes come from the weights, which the plan does not read.
  std::printf("%s, %d worker(s): moved %.0f bytes (%.0f between workers, %.0f through the coordinator), planned %.0f "
              "(%+.2f %%)\n", method.c_str(), workers, moved, static_cast<double>(cluster.data_bytes()),
              through_coordinator, planned, 100.0 * (moved / planned - 1.0));
  const double tolerance = method == "finequant" ? 0.1 : 0.03;
  EXPECT_NEAR(moved / planned, 1.0, tolerance) << "moved " << moved << " bytes, planned " << planned;
  if (planned_statistics > 0) {
    EXPECT_NEAR(cluster.data_bytes() / planned_statistics, 1.0, 0.03) << "statistics between workers";
  }
  EXPECT_EQ(cluster.data_bytes("pulled"), cluster.data_bytes("served")) << "every byte served is pulled";
  if (workers > 1 && planned_statistics > 0) {
    EXPECT_GT(cluster.data_bytes("pulled"), 0.0);
  }
  // The owners reduce: every group with a quantized linear once per layer, at least (a lost
  // worker would redo some).
  int reductions = 0;
  for (const auto& worker : counted) reductions += worker->reductions;
  if (planned_statistics > 0 || workers == 1) {
    EXPECT_GE(reductions, layers * 2) << method << " on " << workers;
  }
}

TEST(DistributedJobTest, GptqOnThreeWorkersMatchesEmbeddedBytes) { ExpectSameBytesAsEmbedded("gptq", 3); }
TEST(DistributedJobTest, ZfoldOnTwoWorkersMatchesEmbeddedBytes) { ExpectSameBytesAsEmbedded("zfold", 2); }
TEST(DistributedJobTest, AespaOnOneWorkerMatchesEmbeddedBytes) { ExpectSameBytesAsEmbedded("aespa", 1); }
TEST(DistributedJobTest, AespaOnTwoWorkersMatchesEmbeddedBytes) { ExpectSameBytesAsEmbedded("aespa", 2); }
// Three and five workers split q/k/v (8 query heads, 4 KV heads: 16 heads of one size) by
// head, in runs of 5, 6, 5 heads and of 3 or 4: more workers than linears all solve.
TEST(DistributedJobTest, AespaOnThreeWorkersMatchesEmbeddedBytes) {
  ExpectSameBytesAsEmbedded("aespa", 3, 32, Propagation::kSequential, {}, {3, 2}, /*head_parts=*/3);
}
TEST(DistributedJobTest, AespaOnFiveWorkersMatchesEmbeddedBytes) {
  ExpectSameBytesAsEmbedded("aespa", 5, 32, Propagation::kSequential, {}, {3, 2}, /*head_parts=*/5);
}
// k_proj kept in full precision: ζ stays out of the norm it shares, and q and v are still
// solved on two workers.
TEST(DistributedJobTest, AespaWithASkippedSiblingOnThreeWorkersMatchesEmbeddedBytes) {
  ExpectSameBytesAsEmbedded("aespa", 3, 32, Propagation::kSequential, {"self_attn.k_proj"}, {2, 2}, /*head_parts=*/3);
}
// Every group of a layer solved at once, on different owners.
TEST(DistributedJobTest, ParallelPropagationGptqOnThreeWorkersMatchesEmbeddedBytes) {
  ExpectSameBytesAsEmbedded("gptq", 3, 32, Propagation::kParallel);
}
// The full-precision layer's statistics all at once, aespa's groups still one after another
// (a group's ζ may be folded into another group's tensors), each in two steps.
TEST(DistributedJobTest, ParallelPropagationAespaOnTwoWorkersMatchesEmbeddedBytes) {
  ExpectSameBytesAsEmbedded("aespa", 2, 32, Propagation::kParallel);
}
// From per channel, so the workers must reach the group sizes the job declared.
TEST(DistributedJobTest, FineQuantOnTwoWorkersMatchesEmbeddedBytes) { ExpectSameBytesAsEmbedded("finequant", 2, -1); }
// The channel maxima reduce across shards and workers like the sums; the split and the
// checkpoint written at the end come out the same.
TEST(DistributedJobTest, FlattenQuantOnThreeWorkersMatchesEmbeddedBytes) { ExpectSameBytesAsEmbedded("flattenquant", 3); }

// A worker lost in the per-head step of layer 0's q/k/v: the survivors redo its run of heads
// only; the runner moves its shards and redoes the layer, applying the q/k/v solution it has
// (the shared step is not run again); the bytes are the embedded job's.
TEST(DistributedJobTest, AespaWorkerLostInThePerHeadStepHasOnlyItsRunRedone) {
  testing::ScopedTempDir dir;
  const JobSpec embedded = SmallJob("aespa", dir.Child("embedded"), 32);
  ASSERT_TRUE(RunEmbeddedJob(embedded, JobEvents()).ok());
  Cluster cluster(3);
  auto remote = cluster.pool().AwaitWorkers(3, std::chrono::seconds(20));
  ASSERT_TRUE(remote.ok()) << remote.status();
  std::vector<std::unique_ptr<CountingWorker>> counted;
  std::vector<WorkerClient*> clients;
  for (auto& worker : *remote) clients.push_back(counted.emplace_back(std::make_unique<CountingWorker>(*worker)).get());
  counted[2]->dies_in_heads = true;
  auto report = RunJob(SmallJob("aespa", dir.Child("remote"), 32), clients, JobEvents());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(ReadFileBytes(dir.Child("embedded") + "/model.safetensors") ==
              ReadFileBytes(dir.Child("remote") + "/model.safetensors"));
  int shared_solves = 0, head_solves = 0;
  for (const auto& worker : counted) {
    shared_solves += worker->shared_solves;
    head_solves += worker->head_solves;
  }
  // Layer 0's q/k/v: 3 runs asked, 1 redone; then two workers split by linear. Two shared
  // steps per layer (q/k/v and gate/up), none repeated.
  EXPECT_EQ(head_solves, 3 + 1);
  EXPECT_EQ(counted[2]->head_solves, 1);
  EXPECT_EQ(shared_solves, 2 * (*report)["plan"]["layers"].get<int>());
}

TEST(DistributedJobTest, TooFewWorkersIsADeadlineNotAHang) {
  Cluster cluster(1);
  auto remote = cluster.pool().AwaitWorkers(2, std::chrono::milliseconds(500));
  EXPECT_EQ(remote.status().code(), absl::StatusCode::kDeadlineExceeded);
}

}  // namespace
}  // namespace qshard
