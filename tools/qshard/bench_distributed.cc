#include "tools/qshard/bench_distributed.h"

#include <atomic>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "core/model_config.h"
#include "core/status.h"
#include "engine/job_observer.h"
#include "engine/job_runner.h"
#include "grpcpp/grpcpp.h"
#include "remote/worker_pool.h"
#include "remote/worker_session.h"

namespace qshard::cli {
namespace {

using Clock = std::chrono::steady_clock;

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct Run {
  double seconds = 0.0;
  uint64_t bytes = 0;  // over the wire: through the coordinator, both directions, and between workers
  std::string weights;  // model.safetensors
  double first_group_seconds = 0.0;  // solving the layers' first group (q/k/v), all layers
};

// Adds up the solve time of every layer's first linear group (the attention's q/k/v).
class FirstGroupTimer : public JobObserver {
 public:
  void GroupSolved(const std::string&, int group, double seconds) override {
    if (group == 0) seconds_ += seconds;
  }
  double seconds() const { return seconds_; }

 private:
  double seconds_ = 0.0;
};

absl::StatusOr<Run> Embedded(JobSpec spec) {
  FirstGroupTimer timer;
  JobEvents events;
  events.observer = &timer;
  const auto start = Clock::now();
  QSHARD_RETURN_IF_ERROR(RunEmbeddedJob(spec, events).status());
  return Run{std::chrono::duration<double>(Clock::now() - start).count(), 0,
             ReadBytes(spec.out_dir + "/model.safetensors"), timer.seconds()};
}

// `count` workers in threads, each with threads/count of the cores, on a loopback pool.
absl::StatusOr<Run> OnWorkers(JobSpec spec, int count, int threads) {
  WorkerPool pool;
  std::atomic<uint64_t> between_workers = 0;  // statistics the workers pulled from each other
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&pool);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) return absl::UnavailableError("could not listen on a loopback port");
  std::vector<std::thread> sessions;
  for (int i = 0; i < count; ++i)
    sessions.emplace_back([&, i] {
      WorkerSessionOptions options;
      options.hello.set_name(absl::StrCat("bench-", i));
      options.hello.set_threads(std::max(1, threads / count));
      options.data.bytes_served = &between_workers;
      RunWorkerSession(grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()),
                       options)
          .IgnoreError();  // the session ends when the server shuts down
    });
  absl::StatusOr<Run> run;
  {
    auto workers = pool.AwaitWorkers(count, std::chrono::seconds(30));
    if (!workers.ok()) {
      run = workers.status();
    } else {
      std::vector<WorkerClient*> clients;
      for (auto& w : *workers) clients.push_back(w.get());
      FirstGroupTimer timer;
      JobEvents events;
      events.observer = &timer;
      const auto start = Clock::now();
      auto report = RunJob(spec, clients, events);
      if (report.ok()) {
        run = Run{std::chrono::duration<double>(Clock::now() - start).count(),
                  pool.bytes_to_workers() + pool.bytes_from_workers() + between_workers.load(), ReadBytes(spec.out_dir + "/model.safetensors"),
                  timer.seconds()};
      } else {
        run = report.status();
      }
    }
  }
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  for (std::thread& t : sessions) t.join();
  return run;
}

}  // namespace

absl::StatusOr<std::vector<nlohmann::json>> RunDistributedBench(const DistributedBenchOptions& options) {
  QSHARD_ASSIGN_OR_RETURN(ScratchDir scratch, ScratchDir::Create());
  QSHARD_ASSIGN_OR_RETURN(const ModelConfig config, LoadModelConfig(options.spec.model_dir));
  const int threads = options.common.threads;
  JobSpec spec = options.spec;
  spec.execution.threads = threads;
  spec.out_dir = scratch.File("embedded");
  QSHARD_ASSIGN_OR_RETURN(const Run embedded, Embedded(spec));
  std::vector<nlohmann::json> rows;
  rows.push_back({{"mode", "embedded"}, {"workers", 1}, {"seconds", embedded.seconds},
                  {"qkv_solve_seconds", embedded.first_group_seconds}, {"mb_per_layer", 0.0}, {"same_bytes", true},
                  {"cpu", CpuModelName()}, {"threads", threads}});
  double one_worker = 0.0;
  for (int count : options.workers) {
    spec.out_dir = scratch.File(absl::StrCat("workers-", count));
    QSHARD_ASSIGN_OR_RETURN(const Run run, OnWorkers(spec, count, threads));
    if (one_worker == 0.0) one_worker = count == 1 ? run.seconds : 0.0;
    nlohmann::json row = {{"mode", PropagationName(spec.calibration.propagation)},
                          {"workers", count},
                          {"seconds", run.seconds},
                          {"qkv_solve_seconds", run.first_group_seconds},
                          {"mb_per_layer", run.bytes / 1e6 / config.num_layers},
                          {"vs_embedded", run.seconds / embedded.seconds},
                          {"same_bytes", run.weights == embedded.weights}};
    if (one_worker > 0.0) row["speedup"] = one_worker / run.seconds;
    rows.push_back(row);
  }
  rows.back()["note"] = absl::StrCat(options.spec.method.method, " W", options.spec.method.spec.bits, ", ",
                                     options.spec.calibration.nsamples, " windows of ", options.spec.calibration.seqlen,
                                     ", ", options.spec.calibration.shards, " shards; workers are threads of this "
                                     "process sharing ", threads, " threads over loopback gRPC");
  return rows;
}

std::vector<BenchColumn> DistributedBenchColumns() {
  return {{"mode", "mode"},
          {"workers", "workers"},
          {"seconds", "seconds", 2},
          {"qkv_solve_seconds", "q/k/v solve s", 2},
          {"speedup", "vs 1 worker", 2},
          {"vs_embedded", "vs embedded", 2},
          {"mb_per_layer", "MB/layer", 2},
          {"same_bytes", "same bytes"}};
}

}  // namespace qshard::cli
