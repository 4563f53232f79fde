#include "remote/worker_pool.h"

#include <algorithm>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "remote/job_spec_proto.h"
#include "remote/transport_security.h"
#include "remote/wire.h"

namespace qshard {

using Clock = std::chrono::steady_clock;
class WorkerStream;

// One registered worker: its hello, its lease and the one task in flight. The reactor feeds
// it frames; RemoteWorker calls Call() from the job's thread.
class WorkerConnection : public std::enable_shared_from_this<WorkerConnection> {
 public:
  WorkerConnection(WorkerPool& pool, std::chrono::milliseconds lease, size_t chunk_bytes)
      : pool_(pool), lease_(lease), chunk_bytes_(chunk_bytes) {}

  void Attach(WorkerStream* stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    stream_ = stream;
  }
  void OnFrame(const v1::WorkerFrame& frame);
  // The stream is gone (closed, cancelled or broken): the lease ends.
  void Lost(const std::string& why);

  bool alive() {
    std::lock_guard<std::mutex> lock(mutex_);
    return LeaseHeld();
  }
  v1::WorkerHello hello() {
    std::lock_guard<std::mutex> lock(mutex_);
    return hello_;
  }
  // Sends `task` and waits for its result while the lease holds.
  absl::StatusOr<v1::WorkerTaskResult> Call(const v1::WorkerTask& task);

 private:
  bool LeaseHeld() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    return lost_.empty() && Clock::now() - last_frame_ < lease_;
  }

  WorkerPool& pool_;
  const std::chrono::milliseconds lease_;
  const size_t chunk_bytes_;
  std::mutex call_mutex_;  // held for the whole of a Call
  std::mutex mutex_;
  std::condition_variable arrived_;
  WorkerStream* stream_ ABSL_GUARDED_BY(mutex_) = nullptr;
  v1::WorkerHello hello_ ABSL_GUARDED_BY(mutex_);
  bool registered_ ABSL_GUARDED_BY(mutex_) = false;
  std::string lost_ ABSL_GUARDED_BY(mutex_);  // why the lease ended; empty while it holds
  Clock::time_point last_frame_ ABSL_GUARDED_BY(mutex_) = Clock::now();
  uint64_t next_id_ ABSL_GUARDED_BY(mutex_) = 1;
  uint64_t awaited_id_ ABSL_GUARDED_BY(mutex_) = 0;
  std::string awaited_kind_ ABSL_GUARDED_BY(mutex_);  // wire::TaskKind of the task in flight
  wire::ChunkAssembler assembler_ ABSL_GUARDED_BY(mutex_);
  std::optional<absl::StatusOr<v1::WorkerTaskResult>> result_ ABSL_GUARDED_BY(mutex_);
};

// The server's end of one Connect stream. Writes go out one at a time from a queue.
class WorkerStream : public grpc::ServerBidiReactor<v1::WorkerFrame, v1::CoordinatorFrame> {
 public:
  explicit WorkerStream(std::shared_ptr<WorkerConnection> connection) : connection_(std::move(connection)) {
    connection_->Attach(this);
    StartRead(&in_);
  }

  // Called with the connection's lock held, so the stream is alive. StartWrite is called
  // outside this stream's lock, in case gRPC runs OnWriteDone inline.
  void Send(std::vector<v1::CoordinatorFrame> frames) {
    v1::CoordinatorFrame* first = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto& frame : frames) queue_.push_back(std::move(frame));
      if (!writing_ && !finishing_ && !queue_.empty()) {
        writing_ = true;
        first = &queue_.front();
      }
    }
    if (first != nullptr) StartWrite(first);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      connection_->Lost("the worker closed its stream");
      FinishWhenIdle();
      return;
    }
    connection_->OnFrame(in_);
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    v1::CoordinatorFrame* next = nullptr;
    bool finish = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.pop_front();
      if (!ok) queue_.clear();
      if (!queue_.empty() && !finishing_) {
        next = &queue_.front();
      } else {
        writing_ = false;
        finish = finishing_ && !finished_;
        finished_ = finished_ || finish;
      }
    }
    if (next != nullptr) StartWrite(next);
    if (finish) Finish(grpc::Status::OK);
  }

  void OnCancel() override { connection_->Lost("the stream was cancelled"); }

  void OnDone() override {
    connection_->Attach(nullptr);
    connection_->Lost("the stream ended");
    delete this;
  }

 private:
  void FinishWhenIdle() {
    bool finish = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      finishing_ = true;
      finish = !writing_ && !finished_;
      finished_ = finished_ || finish;
    }
    if (finish) Finish(grpc::Status::OK);
  }

  std::shared_ptr<WorkerConnection> connection_;
  v1::WorkerFrame in_;
  std::mutex mutex_;
  std::deque<v1::CoordinatorFrame> queue_;
  bool writing_ = false;    // a StartWrite is outstanding
  bool finishing_ = false;  // the worker is gone: finish once no write is outstanding
  bool finished_ = false;
};

void WorkerConnection::OnFrame(const v1::WorkerFrame& frame) {
  bool register_now = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    last_frame_ = Clock::now();
    switch (frame.body_case()) {
      case v1::WorkerFrame::kHello:
        register_now = !registered_;
        registered_ = true;
        hello_ = frame.hello();
        break;
      case v1::WorkerFrame::kResult: {
        pool_.bytes_from_workers_ += frame.result().data().size();
        v1::WorkerTaskResult result;
        auto complete = assembler_.Add(frame.result(), result);
        if (!complete.ok()) {  // a damaged stream is not trusted further: the lease ends
          lost_ = absl::StrCat("the result of its ", awaited_kind_, " task arrived damaged: ", complete.status().message());
        } else if (*complete && frame.result().message_id() == awaited_id_) {
          result_ = std::move(result);
        }
        break;
      }
      default:
        break;  // heartbeat: the timestamp above is all it does
    }
  }
  arrived_.notify_all();
  if (register_now) pool_.Register(shared_from_this());
}

void WorkerConnection::Lost(const std::string& why) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (lost_.empty()) lost_ = why;
  }
  arrived_.notify_all();
}

absl::StatusOr<v1::WorkerTaskResult> WorkerConnection::Call(const v1::WorkerTask& task) {
  std::lock_guard<std::mutex> one_call(call_mutex_);  // a worker runs one task at a time
  std::unique_lock<std::mutex> lock(mutex_);
  const std::string who = hello_.name().empty() ? "worker" : absl::StrCat("worker ", hello_.name());
  if (!LeaseHeld() || stream_ == nullptr)
    return absl::UnavailableError(absl::StrCat(who, " lost its lease: ", lost_.empty() ? "no heartbeat" : lost_));
  awaited_id_ = next_id_++;
  awaited_kind_ = wire::TaskKind(task);
  result_.reset();
  absl::StatusOr<std::vector<v1::Chunk>> chunks = wire::Cut(task, awaited_id_, chunk_bytes_);
  if (!chunks.ok()) return WithContext(chunks.status(), absl::StrCat(who, ": its ", awaited_kind_, " task"));
  std::vector<v1::CoordinatorFrame> frames;
  for (v1::Chunk& chunk : *chunks) {
    pool_.bytes_to_workers_ += chunk.data().size();
    *frames.emplace_back().mutable_task() = std::move(chunk);
  }
  stream_->Send(std::move(frames));
  while (!result_) {
    if (!LeaseHeld())
      return absl::UnavailableError(absl::StrCat(who, " lost its lease: ", lost_.empty() ? "no heartbeat" : lost_));
    arrived_.wait_for(lock, std::chrono::milliseconds(100));
  }
  return std::move(*result_);
}

namespace {

// The WorkerClient interface over a connection: each call is one task.
class RemoteWorker : public WorkerClient {
 public:
  explicit RemoteWorker(std::shared_ptr<WorkerConnection> connection) : connection_(std::move(connection)) {}

  absl::Status StartJob(const JobSpec& spec, int64_t seqlen, std::vector<int> shards) override {
    v1::WorkerTask task;
    v1::StartJobTask& start = *task.mutable_start_job();
    *start.mutable_spec() = JobSpecToProto(spec);
    start.set_seqlen(seqlen);
    for (int shard : shards) start.add_shards(shard);
    QSHARD_ASSIGN_OR_RETURN(const v1::WorkerTaskResult result, Run(task));
    device_plan_ = nullptr;
    KeepDevicePlan(result);
    return absl::OkStatus();
  }

  absl::Status BeginLayer(int layer) override {
    v1::WorkerTask task;
    task.set_begin_layer(layer);
    return Run(task).status();
  }

  absl::Status AdoptShards(std::vector<int> shards) override {
    v1::WorkerTask task;
    for (int shard : shards) task.mutable_adopt_shards()->add_shards(shard);
    QSHARD_ASSIGN_OR_RETURN(const v1::WorkerTaskResult result, Run(task));
    KeepDevicePlan(result);  // with the adopted shards held (a resumed job's workers start empty)
    return absl::OkStatus();
  }

  absl::Status ReplayLayer(int layer, const std::vector<GroupSolution>& solutions) override {
    for (const GroupSolution& solution : solutions) {  // one group per message
      v1::WorkerTask group;
      group.mutable_replay_group()->set_layer(layer);
      wire::ToProto(solution, *group.mutable_replay_group()->mutable_solution());
      QSHARD_RETURN_IF_ERROR(Run(group).status());
    }
    v1::WorkerTask task;
    task.mutable_replay_layer()->set_layer(layer);
    task.mutable_replay_layer()->set_groups(static_cast<int32_t>(solutions.size()));
    return Run(task).status();
  }

  nlohmann::json DeviceMemory() override { return device_plan_; }

  std::string DataAddress() override { return connection_->hello().data_address(); }
  // Workers from before --device announced none.
  std::string DeviceName() override {
    return connection_->hello().device().empty() ? "cpu" : connection_->hello().device();
  }

  // The worker keeps the values; only the tree nodes it holds come back.
  absl::StatusOr<std::vector<ShardStatistics>> CollectStatistics(const std::vector<int>& groups,
                                                                 bool attention) override {
    v1::WorkerTask task;
    for (int g : groups) task.mutable_collect()->add_groups(g);
    task.mutable_collect()->set_attention(attention);
    QSHARD_ASSIGN_OR_RETURN(v1::WorkerTaskResult result, Run(task));
    std::vector<ShardStatistics> nodes;
    for (const v1::ShardStatisticsData& data : result.statistics()) nodes.push_back({data.shard(), data.shard_count(), {}});
    return nodes;
  }

  absl::Status ReduceStatistics(int group, int shards, const std::vector<StatisticsSource>& sources,
                                std::optional<size_t>* unreachable) override {
    v1::WorkerTask task;
    v1::ReduceTask& reduce = *task.mutable_reduce();
    reduce.set_group(group);
    reduce.set_shards(shards);
    for (const StatisticsSource& source : sources) {
      v1::ReduceSource& data = *reduce.add_sources();
      data.set_address(source.address);
      data.set_first_shard(source.first_shard);
      data.set_shard_count(source.shard_count);
    }
    QSHARD_ASSIGN_OR_RETURN(v1::WorkerTaskResult result, connection_->Call(task));
    if (result.unreachable_source() > 0 && unreachable != nullptr)
      *unreachable = static_cast<size_t>(result.unreachable_source() - 1);
    return wire::StatusOf(result);
  }

  absl::StatusOr<GroupSolution> Solve(int group, const std::vector<std::string>& linears,
                                      const GroupStatistics* statistics, const SharedGroupPart* shared) override {
    v1::WorkerTask task;
    QSHARD_RETURN_IF_ERROR(SolveTaskOf(group, statistics, *task.mutable_solve()));
    for (const std::string& linear : linears) task.mutable_solve()->add_linears(linear);
    if (shared != nullptr) wire::ToProto(*shared, *task.mutable_solve()->mutable_shared());
    QSHARD_ASSIGN_OR_RETURN(v1::WorkerTaskResult result, Run(task));
    return wire::FromProto(result.solution());
  }

  absl::StatusOr<SharedGroupPart> SolveShared(int group, const GroupStatistics* statistics) override {
    v1::WorkerTask task;
    QSHARD_RETURN_IF_ERROR(SolveTaskOf(group, statistics, *task.mutable_solve_shared()));
    QSHARD_ASSIGN_OR_RETURN(v1::WorkerTaskResult result, Run(task));
    return wire::FromProto(result.shared());
  }

  absl::StatusOr<std::vector<HeadsPart>> SolveHeads(int group, const std::vector<HeadRange>& ranges,
                                                    const GroupStatistics* statistics,
                                                    const SharedGroupPart& shared) override {
    v1::WorkerTask task;
    v1::SolveTask& solve = *task.mutable_solve_heads();
    QSHARD_RETURN_IF_ERROR(SolveTaskOf(group, statistics, solve));
    wire::ToProto(shared, *solve.mutable_shared());
    for (const HeadRange& range : ranges) wire::ToProto(range, *solve.add_heads());
    QSHARD_ASSIGN_OR_RETURN(v1::WorkerTaskResult result, Run(task));
    std::vector<HeadsPart> parts;
    for (const v1::HeadsPartData& data : result.heads()) {
      QSHARD_ASSIGN_OR_RETURN(HeadsPart part, wire::FromProto(data));
      parts.push_back(std::move(part));
    }
    return parts;
  }

  absl::Status Apply(int group, const GroupSolution& solution) override {
    v1::WorkerTask task;
    task.mutable_apply()->set_group(group);
    wire::ToProto(solution, *task.mutable_apply()->mutable_solution());
    return Run(task).status();
  }

  absl::Status FinishLayer() override {
    v1::WorkerTask task;
    task.set_finish_layer(true);
    return Run(task).status();
  }

  absl::StatusOr<nlohmann::json> Validate(const JobSpec& spec) override {
    v1::WorkerTask task;
    *task.mutable_validate()->mutable_spec() = JobSpecToProto(spec);
    QSHARD_ASSIGN_OR_RETURN(v1::WorkerTaskResult result, Run(task));
    nlohmann::json validation = nlohmann::json::parse(result.validation_json(), nullptr, /*allow_exceptions=*/false);
    if (!validation.is_object())  // not UNAVAILABLE: the worker answered, wrongly
      return absl::DataLossError(absl::StrCat("worker ", connection_->hello().name(),
                                              ": its validation result is not a JSON object"));
    return validation;
  }

 private:
  // Statistics reach a remote worker only through the data plane: the task names their owner.
  static absl::Status SolveTaskOf(int group, const GroupStatistics* statistics, v1::SolveTask& out) {
    out.set_group(group);
    if (statistics == nullptr) return absl::OkStatus();
    if (statistics->held_at.empty())
      return absl::InternalError("a remote worker's statistics must be reduced on their owner (held_at unset)");
    out.set_statistics_at(statistics->held_at);
    return absl::OkStatus();
  }

  absl::StatusOr<v1::WorkerTaskResult> Run(const v1::WorkerTask& task) {
    QSHARD_ASSIGN_OR_RETURN(v1::WorkerTaskResult result, connection_->Call(task));
    if (absl::Status status = wire::StatusOf(result); !status.ok()) {
      const v1::SolveTask* solve = task.has_solve()          ? &task.solve()
                                   : task.has_solve_shared() ? &task.solve_shared()
                                   : task.has_solve_heads()  ? &task.solve_heads()
                                                             : nullptr;
      if (solve == nullptr || result.unreachable_source() == 0) return status;
      absl::Status aborted = absl::AbortedError(status.message());  // not UNAVAILABLE: this worker is fine
      aborted.SetPayload(kUnreadableHolderPayload, absl::Cord(solve->statistics_at()));
      return aborted;
    }
    return result;
  }

  // The worker's device plan from a start_job or adopt_shards result, when it sent one.
  void KeepDevicePlan(const v1::WorkerTaskResult& result) {
    if (result.device_plan_json().empty()) return;
    device_plan_ = nlohmann::json::parse(result.device_plan_json(), nullptr, /*allow_exceptions=*/false);
    if (device_plan_.is_discarded()) device_plan_ = nullptr;  // a damaged report entry is left out, not fatal
  }

  std::shared_ptr<WorkerConnection> connection_;
  nlohmann::json device_plan_;  // the current job's, from its StartJob and AdoptShards
};

// A Connect refused before it registers anything.
class RefusedStream : public grpc::ServerBidiReactor<v1::WorkerFrame, v1::CoordinatorFrame> {
 public:
  explicit RefusedStream(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

WorkerPool::~WorkerPool() = default;

grpc::ServerBidiReactor<v1::WorkerFrame, v1::CoordinatorFrame>* WorkerPool::Connect(
    grpc::CallbackServerContext* context) {
  if (options_.require_client_certificate && !ClientCertificateVerified(*context))
    return new RefusedStream(grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                          "WorkerService: mutual TLS: the worker presented no client certificate "
                                          "(give it --tls-cert and --tls-key)"));
  return new WorkerStream(std::make_shared<WorkerConnection>(*this, options_.lease, options_.chunk_bytes));
}

void WorkerPool::Register(const std::shared_ptr<WorkerConnection>& connection) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    connections_.push_back(connection);
  }
  ++registrations_;
  registered_.notify_all();
}

absl::StatusOr<std::vector<std::unique_ptr<WorkerClient>>> WorkerPool::AwaitWorkers(size_t count,
                                                                                   std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  std::vector<std::shared_ptr<WorkerConnection>> alive;
  const auto enough = [&] {
    alive.clear();
    for (const auto& c : connections_)
      if (c->alive()) alive.push_back(c);
    return alive.size() >= count;
  };
  if (!registered_.wait_for(lock, timeout, enough))
    return absl::DeadlineExceededError(absl::StrCat(alive.size(), " of ", count, " workers registered in time"));
  std::vector<std::unique_ptr<WorkerClient>> workers;
  for (size_t i = 0; i < count; ++i) workers.push_back(std::make_unique<RemoteWorker>(alive[i]));
  return workers;
}

std::vector<v1::WorkerHello> WorkerPool::Workers() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<v1::WorkerHello> hellos;
  for (const auto& c : connections_)
    if (c->alive()) hellos.push_back(c->hello());
  return hellos;
}

}  // namespace qshard
