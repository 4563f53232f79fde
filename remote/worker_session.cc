#include "remote/worker_session.h"

#include <atomic>
#include <iostream>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "engine/calibration_shards.h"
#include "engine/local_worker.h"
#include "qshard.grpc.pb.h"
#include "remote/job_spec_proto.h"
#include "remote/wire.h"
#include "remote/worker_metrics.h"

namespace qshard {
namespace {

using Stream = grpc::ClientReaderWriter<v1::WorkerFrame, v1::CoordinatorFrame>;

// The session's data plane: the statistics it holds, where it serves them, how it dials peers.
struct DataPlane {
  StatisticsStore store;
  std::string address;
  const DataPlaneOptions& options;
};

// A solve task's reduced statistics (null: none needed): held here as the group's owner, or
// pulled from the owner (an owner that cannot be read is flagged in `result`).
absl::StatusOr<std::shared_ptr<const GroupStatistics>> StatisticsOf(const v1::SolveTask& solve, DataPlane& plane,
                                                                    v1::WorkerTaskResult& result) {
  if (solve.statistics_at().empty()) return nullptr;
  if (solve.statistics_at() == plane.address) return plane.store.Reduced(solve.group());
  auto statistics = PullReduced(solve.group(), solve.statistics_at(), plane.options);
  if (!statistics.ok()) {
    result.set_unreachable_source(1);
    return statistics.status();
  }
  return std::make_shared<const GroupStatistics>(std::move(*statistics));
}

// Pulls and adds a group's partials as its owner, keeping the reduced statistics.
absl::Status Reduce(const v1::ReduceTask& task, DataPlane& plane, v1::WorkerTaskResult& result) {
  std::vector<StatisticsSource> sources;
  for (const v1::ReduceSource& source : task.sources())
    sources.push_back({source.address(), source.first_shard(), source.shard_count()});
  std::optional<size_t> unreachable;
  auto reduced = PullAndReduce(task.group(), task.shards(), sources, plane.options, plane.store, plane.address,
                               &unreachable);
  if (unreachable) result.set_unreachable_source(static_cast<int32_t>(*unreachable) + 1);
  QSHARD_RETURN_IF_ERROR(reduced.status());
  plane.store.HoldReduced(task.group(), std::move(*reduced));
  return absl::OkStatus();
}

// A finished layer's groups as their replay_group tasks arrive, until its replay_layer task.
struct PendingReplay {
  int layer = -1;
  std::vector<GroupSolution> groups;

  absl::Status Add(const v1::ReplayGroupTask& task) {
    if (!groups.empty() && task.layer() != layer) {
      groups.clear();
      return absl::InvalidArgumentError(absl::StrCat("a group of layer ", task.layer(), " among layer ", layer, "'s"));
    }
    auto solution = wire::FromProto(task.solution());
    if (!solution.ok()) {
      groups.clear();
      return solution.status();
    }
    layer = task.layer();
    groups.push_back(std::move(*solution));
    return absl::OkStatus();
  }
  // The layer's groups (cleared here), when they are the `count` announced.
  absl::StatusOr<std::vector<GroupSolution>> Take(int for_layer, int count) {
    std::vector<GroupSolution> taken = std::move(groups);
    groups.clear();
    if (static_cast<int>(taken.size()) != count || (count > 0 && layer != for_layer))
      return absl::InvalidArgumentError(absl::StrCat("replay of layer ", for_layer, ": ", count, " groups announced, ",
                                                     taken.size(), " of layer ", layer, " received"));
    return taken;
  }
};

// What the job keeps on this worker's device now that it holds its shards (start_job, and
// adopt_shards after a restart or a lost worker), printed and sent back for the job's report.
void SendDevicePlan(LocalWorker& worker, v1::WorkerTaskResult& result) {
  const nlohmann::json plan = worker.DeviceMemory();
  if (plan.is_null()) return;  // the CPU
  std::cerr << plan.value("summary", "") << std::endl;
  result.set_device_plan_json(plan.dump());
}

// One task on the local worker; its outcome goes into `result`.
void RunTask(LocalWorker& worker, DataPlane& plane, PendingReplay& replay, const v1::WorkerTask& task,
             v1::WorkerTaskResult& result) {
  absl::Status status;
  switch (task.body_case()) {
    case v1::WorkerTask::kStartJob: {
      auto spec = JobSpecFromProto(task.start_job().spec());
      status = spec.ok() ? worker.StartJob(*spec, task.start_job().seqlen(),
                                           {task.start_job().shards().begin(), task.start_job().shards().end()})
                         : spec.status();
      if (status.ok()) SendDevicePlan(worker, result);
      break;
    }
    case v1::WorkerTask::kBeginLayer:
      plane.store.Clear();
      status = worker.BeginLayer(task.begin_layer());
      break;
    case v1::WorkerTask::kCollect: {
      const std::vector<int> groups(task.collect().groups().begin(), task.collect().groups().end());
      auto partials = worker.CollectStatistics(groups, task.collect().attention());
      status = partials.status();
      if (!partials.ok()) break;
      for (const ShardStatistics& partial : *partials) {  // the values stay here for the owners to pull
        v1::ShardStatisticsData& data = *result.add_statistics();
        data.set_shard(partial.first_shard);
        data.set_shard_count(partial.shard_count);
      }
      plane.store.HoldPartials(groups, std::move(*partials));
      break;
    }
    case v1::WorkerTask::kReduce:
      status = Reduce(task.reduce(), plane, result);
      break;
    case v1::WorkerTask::kSolve: {
      const v1::SolveTask& solve = task.solve();
      auto statistics = StatisticsOf(solve, plane, result);
      std::optional<SharedGroupPart> shared;
      if (statistics.ok() && solve.has_shared()) {
        auto parsed = wire::FromProto(solve.shared());
        if (!parsed.ok()) {
          status = parsed.status();
          break;
        }
        shared = std::move(*parsed);
      }
      auto solution = statistics.ok() ? worker.Solve(solve.group(), {solve.linears().begin(), solve.linears().end()},
                                                     statistics->get(), shared ? &*shared : nullptr)
                                      : statistics.status();
      status = solution.status();
      if (solution.ok()) wire::ToProto(*solution, *result.mutable_solution());
      break;
    }
    case v1::WorkerTask::kSolveShared: {
      auto statistics = StatisticsOf(task.solve_shared(), plane, result);
      auto shared = statistics.ok() ? worker.SolveShared(task.solve_shared().group(), statistics->get())
                                    : statistics.status();
      status = shared.status();
      if (shared.ok()) wire::ToProto(*shared, *result.mutable_shared());
      break;
    }
    case v1::WorkerTask::kSolveHeads: {
      const v1::SolveTask& solve = task.solve_heads();
      auto statistics = StatisticsOf(solve, plane, result);
      auto shared = wire::FromProto(solve.shared());
      std::vector<HeadRange> ranges;
      for (const v1::HeadRangeData& range : solve.heads()) ranges.push_back(wire::FromProto(range));
      absl::StatusOr<std::vector<HeadsPart>> parts = absl::UnknownError("not run");
      if (!statistics.ok())
        parts = statistics.status();
      else if (!shared.ok())
        parts = shared.status();
      else
        parts = worker.SolveHeads(solve.group(), ranges, statistics->get(), *shared);
      status = parts.status();
      if (parts.ok())
        for (const HeadsPart& part : *parts) wire::ToProto(part, *result.add_heads());
      break;
    }
    case v1::WorkerTask::kApply: {
      auto solution = wire::FromProto(task.apply().solution());
      status = solution.ok() ? worker.Apply(task.apply().group(), *solution) : solution.status();
      plane.store.Release(task.apply().group());  // solved: its owner's reduced statistics go
      break;
    }
    case v1::WorkerTask::kAdoptShards:
      status = worker.AdoptShards({task.adopt_shards().shards().begin(), task.adopt_shards().shards().end()});
      if (status.ok()) SendDevicePlan(worker, result);  // a resumed job's workers start empty
      break;
    case v1::WorkerTask::kReplayGroup:
      status = replay.Add(task.replay_group());
      break;
    case v1::WorkerTask::kReplayLayer: {
      auto solutions = replay.Take(task.replay_layer().layer(), task.replay_layer().groups());
      status = solutions.ok() ? worker.ReplayLayer(task.replay_layer().layer(), *solutions) : solutions.status();
      break;
    }
    case v1::WorkerTask::kFinishLayer:
      status = worker.FinishLayer();
      break;
    case v1::WorkerTask::kValidate: {
      auto spec = JobSpecFromProto(task.validate().spec());
      auto validation = spec.ok() ? worker.Validate(*spec) : spec.status();
      status = validation.status();
      if (validation.ok()) result.set_validation_json(validation->dump());
      break;
    }
    default:
      status = absl::InvalidArgumentError("unknown task");
  }
  wire::SetStatus(status, result);
}

// The calibration tokens the worker holds (its shards' windows times seqlen), counted once per
// finished layer into qshard_calibration_tokens_total.
class TokenCounter {
 public:
  // After `task` succeeded.
  void Done(const v1::WorkerTask& task, WorkerMetrics& metrics) {
    if (task.has_start_job()) {
      const auto spec = JobSpecFromProto(task.start_job().spec());
      if (!spec.ok()) return;  // the task would have failed
      nsamples_ = spec->calibration.nsamples;
      shards_ = spec->calibration.shards;
      seqlen_ = task.start_job().seqlen();
      held_ = Tokens(task.start_job().shards());
    } else if (task.has_adopt_shards()) {
      held_ += Tokens(task.adopt_shards().shards());
    } else if (task.body_case() == v1::WorkerTask::kFinishLayer) {
      metrics.TokensProcessed(held_);
    }
  }

 private:
  int64_t Tokens(const google::protobuf::RepeatedField<int32_t>& shards) const {
    int64_t windows = 0;
    for (int shard : shards) windows += ShardWindows(nsamples_, shards_, shard).count;
    return windows * seqlen_;
  }

  int64_t nsamples_ = 0, seqlen_ = 0, held_ = 0;
  int shards_ = 0;
};

// Writes on the stream from the task loop and the heartbeat thread, one at a time.
class Writer {
 public:
  explicit Writer(Stream& stream) : stream_(stream) {}
  bool Write(const v1::WorkerFrame& frame) {
    std::lock_guard<std::mutex> lock(mutex_);
    return stream_.Write(frame);
  }

 private:
  Stream& stream_;
  std::mutex mutex_;
};

// How the stream's end reads to the caller, who retries only UNAVAILABLE.
absl::Status Ended(const grpc::Status& finished, const std::string& what) {
  if (finished.error_code() == grpc::StatusCode::UNAUTHENTICATED)  // retrying cannot help
    return absl::UnauthenticatedError(absl::StrCat("the coordinator refused this worker: ", finished.error_message()));
  if (!finished.ok()) return absl::UnavailableError(absl::StrCat(what, ": ", finished.error_message()));
  return absl::OkStatus();
}

}  // namespace

absl::Status RunWorkerSession(const std::shared_ptr<grpc::Channel>& channel, const WorkerSessionOptions& options) {
  DataPlaneOptions data = options.data;
  if (options.metrics != nullptr) {  // the worker's metrics count the data plane's bytes, unless the caller does
    if (data.bytes_served == nullptr) data.bytes_served = options.metrics->data_bytes_served();
    if (data.bytes_pulled == nullptr) data.bytes_pulled = options.metrics->data_bytes_pulled();
  }
  DataPlane plane{{}, "", data};
  QSHARD_ASSIGN_OR_RETURN(std::unique_ptr<StatisticsServer> data_server,
                          StatisticsServer::Start(plane.store, data,
                                                  [](const std::string& line) { std::cerr << line << std::endl; }));
  plane.address = data_server->address();
  auto stub = v1::WorkerService::NewStub(channel);
  grpc::ClientContext context;
  std::unique_ptr<Stream> stream = stub->Connect(&context);
  Writer writer(*stream);
  v1::WorkerFrame hello;
  *hello.mutable_hello() = options.hello;
  hello.mutable_hello()->set_data_address(plane.address);
  if (!writer.Write(hello)) {
    const grpc::Status finished = stream->Finish();
    const std::string what = "the coordinator closed the stream before registration";
    return finished.ok() ? absl::UnavailableError(what) : Ended(finished, what);
  }

  std::atomic<bool> done = false;
  std::mutex mutex;
  std::condition_variable wake;
  std::thread heartbeat([&] {
    v1::WorkerFrame beat;
    beat.set_heartbeat(true);
    std::unique_lock<std::mutex> lock(mutex);
    while (!wake.wait_for(lock, std::chrono::milliseconds(options.heartbeat_ms), [&] { return done.load(); }))
      writer.Write(beat);
  });

  WorkerMetrics uncounted;
  WorkerMetrics& metrics = options.metrics != nullptr ? *options.metrics : uncounted;
  metrics.SetConnected(true);
  TokenCounter tokens;
  LocalWorker worker(options.hello.threads(), /*restartable=*/true, options.device);
  PendingReplay replay;
  wire::ChunkAssembler assembler;
  v1::CoordinatorFrame frame;
  absl::Status status;
  while (stream->Read(&frame)) {
    v1::WorkerTask task;
    auto complete = assembler.Add(frame.task(), task);
    if (!complete.ok()) {  // a damaged stream is not trusted further: the session ends
      status = WithContext(complete.status(), "a task from the coordinator arrived damaged");
      break;
    }
    if (!*complete) continue;
    v1::WorkerTaskResult result;
    const auto started = std::chrono::steady_clock::now();
    RunTask(worker, plane, replay, task, result);
    const absl::Status outcome = wire::StatusOf(result);
    metrics.TaskDone(task, outcome, std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    if (outcome.ok()) tokens.Done(task, metrics);
    absl::StatusOr<std::vector<v1::Chunk>> chunks = wire::Cut(result, frame.task().message_id(), options.chunk_bytes);
    if (!chunks.ok()) {  // a result too large for one message goes back as that error
      result = v1::WorkerTaskResult();
      wire::SetStatus(WithContext(chunks.status(), absl::StrCat("the result of its ", wire::TaskKind(task), " task")),
                      result);
      chunks = wire::Cut(result, frame.task().message_id(), options.chunk_bytes);
    }
    bool written = true;
    for (const v1::Chunk& chunk : *chunks) {
      v1::WorkerFrame out;
      *out.mutable_result() = chunk;
      written = written && writer.Write(out);
    }
    if (!written) break;
  }
  {
    std::lock_guard<std::mutex> lock(mutex);
    done = true;
  }
  wake.notify_all();
  heartbeat.join();
  metrics.SetConnected(false);
  stream->WritesDone();
  const grpc::Status finished = stream->Finish();
  QSHARD_RETURN_IF_ERROR(status);
  return Ended(finished, "coordinator stream ended");
}

}  // namespace qshard
