#include "remote/statistics_service.h"

#include <chrono>
#include <thread>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/server_builder.h"
#include "qshard.grpc.pb.h"
#include "remote/statistics_slices.h"

namespace qshard {
namespace {

// The data plane speaks TLS when the worker has a certificate of its own (mutual TLS when it
// also has a CA), else plaintext, which CheckPlaintextAllowed keeps on loopback: so every
// worker of a cluster given the same kind of files dials its peers the way they listen.
TlsFiles DataPlaneTls(const TlsFiles& tls) { return tls.cert.empty() || tls.key.empty() ? TlsFiles() : tls; }

}  // namespace

void StatisticsStore::HoldPartials(const std::vector<int>& groups, std::vector<ShardStatistics> nodes) {
  std::lock_guard<std::mutex> lock(mutex_);
  position_.clear();
  partials_.clear();
  for (size_t k = 0; k < groups.size(); ++k) position_[groups[k]] = k;
  for (ShardStatistics& node : nodes) {
    auto& values = partials_[{node.first_shard, node.shard_count}];
    for (GroupStatistics& value : node.groups) values.push_back(std::make_shared<const GroupStatistics>(std::move(value)));
  }
}

void StatisticsStore::HoldReduced(int group, GroupStatistics statistics) {
  std::lock_guard<std::mutex> lock(mutex_);
  reduced_[group] = std::make_shared<const GroupStatistics>(std::move(statistics));
}

absl::StatusOr<std::shared_ptr<const GroupStatistics>> StatisticsStore::Reduced(int group) {
  v1::PullRequest request;
  request.set_group(group);
  return Serve(request);
}

void StatisticsStore::Release(int group) {
  std::lock_guard<std::mutex> lock(mutex_);
  reduced_.erase(group);
}

void StatisticsStore::Clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  position_.clear();
  partials_.clear();
  reduced_.clear();
}

absl::StatusOr<std::shared_ptr<const GroupStatistics>> StatisticsStore::Serve(const v1::PullRequest& request) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (request.shard_count() == 0) {
    auto it = reduced_.find(request.group());
    if (it == reduced_.end())
      return absl::NotFoundError(absl::StrCat("no reduced statistics of group ", request.group(), " held here"));
    return it->second;
  }
  auto node = partials_.find({request.first_shard(), request.shard_count()});
  auto position = position_.find(request.group());
  const std::string what = absl::StrCat("group ", request.group(), "'s statistics of shards [", request.first_shard(),
                                        ", ", request.first_shard() + request.shard_count(), ")");
  if (node == partials_.end() || position == position_.end() || node->second[position->second] == nullptr)
    return absl::NotFoundError(absl::StrCat(what, " are not held here (or were pulled already)"));
  return std::move(node->second[position->second]);  // pulled once: the holder lets it go
}

namespace {

using PieceWriter = grpc::ServerWriteReactor<v1::StatisticsPiece>;

// Streams one value's pieces, making each when the previous one is written.
class PullReactor : public PieceWriter {
 public:
  PullReactor(std::shared_ptr<const GroupStatistics> value, const DataPlaneOptions& options)
      : writer_(std::move(value), options.max_slice_bytes), served_(options.bytes_served) {
    WriteNext();
  }
  void OnWriteDone(bool ok) override {
    if (!ok) return Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the puller went away"));
    WriteNext();
  }
  void OnDone() override { delete this; }

 private:
  void WriteNext() {
    if (!writer_.Next(piece_)) return Finish(grpc::Status::OK);
    if (served_ != nullptr) *served_ += piece_.ByteSizeLong();
    StartWrite(&piece_);
  }

  SliceWriter writer_;
  std::atomic<uint64_t>* served_;
  v1::StatisticsPiece piece_;
};

class RefusedPull : public PieceWriter {
 public:
  explicit RefusedPull(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

class StatisticsServer::Service : public v1::StatisticsService::CallbackService {
 public:
  Service(StatisticsStore& store, const DataPlaneOptions& options) : store_(store), options_(options) {}

  PieceWriter* Pull(grpc::CallbackServerContext* context, const v1::PullRequest* request) override {
    if (!DataPlaneTls(options_.tls).ca.empty() && !ClientCertificateVerified(*context))
      return new RefusedPull(grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                          "StatisticsService: mutual TLS: the peer presented no client certificate"));
    auto value = store_.Serve(*request);
    if (!value.ok()) return new RefusedPull(grpc::Status(grpc::StatusCode::NOT_FOUND, std::string(value.status().message())));
    return new PullReactor(std::move(*value), options_);
  }

 private:
  StatisticsStore& store_;
  const DataPlaneOptions options_;
};

absl::StatusOr<std::unique_ptr<StatisticsServer>> StatisticsServer::Start(
    StatisticsStore& store, const DataPlaneOptions& options, const std::function<void(const std::string&)>& log) {
  const TlsFiles tls = DataPlaneTls(options.tls);
  if (tls.cert.empty()) QSHARD_RETURN_IF_ERROR(CheckPlaintextAllowed(options.listen, "--data-listen", options.insecure, log));
  QSHARD_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                          MakeServerCredentials(options.listen, tls, options.insecure,
                                                [](const std::string&) {}));  // warned above
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  std::unique_ptr<StatisticsServer> server(new StatisticsServer());
  server->service_ = std::make_unique<Service>(store, options);
  grpc::ServerBuilder builder;
  builder.SetMaxReceiveMessageSize(4096);  // a pull request is three integers
  int port = 0;
  builder.AddListeningPort(options.listen, credentials, &port);
  builder.RegisterService(server->service_.get());
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || (port == 0 && !absl::StartsWith(options.listen, "unix:")))
    return absl::UnavailableError(absl::StrCat("--data-listen: cannot listen on ", options.listen));
  server->address_ = BoundAddress(options.listen, port);
  return server;
}

StatisticsServer::~StatisticsServer() {
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
}

namespace {

// One node's stream from a peer; a stream left unfinished is cancelled, and so is one that
// receives nothing for `stall_timeout` (a watchdog thread cancels its context).
class RemoteNode {
 public:
  RemoteNode(const std::shared_ptr<grpc::Channel>& channel, const v1::PullRequest& request,
             const DataPlaneOptions& options)
      : stub_(v1::StatisticsService::NewStub(channel)),
        reader_(stub_->Pull(&context_, request)),
        stall_timeout_(options.stall_timeout),
        pulled_(options.bytes_pulled),
        watchdog_([this] { WatchForStalls(); }) {}
  ~RemoteNode() {
    {
      absl::MutexLock lock(&mutex_);
      done_ = true;
    }
    watchdog_.join();
    if (finished_) return;
    context_.TryCancel();
    reader_->Finish().ok();  // cancelled: the outcome is known
  }

  absl::StatusOr<bool> Read(v1::StatisticsPiece& piece) {
    const bool more = reader_->Read(&piece);
    {
      absl::MutexLock lock(&mutex_);
      ++pieces_;
    }
    if (more) {
      if (pulled_ != nullptr) *pulled_ += piece.ByteSizeLong();
      return true;
    }
    finished_ = true;
    const grpc::Status status = reader_->Finish();
    if (status.ok()) return false;
    absl::MutexLock lock(&mutex_);
    if (stalled_)
      return absl::UnavailableError(absl::StrCat("no data from the holder for ", stall_timeout_.count(), " ms"));
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
  }

 private:
  void WatchForStalls() {
    absl::MutexLock lock(&mutex_);
    for (;;) {
      const uint64_t seen = pieces_;
      const auto progressed = [this, seen] { return done_ || pieces_ != seen; };
      if (!mutex_.AwaitWithTimeout(absl::Condition(&progressed), absl::FromChrono(stall_timeout_))) {
        stalled_ = true;
        context_.TryCancel();
        return;
      }
      if (done_) return;
    }
  }

  std::unique_ptr<v1::StatisticsService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<v1::StatisticsPiece>> reader_;
  bool finished_ = false;
  const std::chrono::milliseconds stall_timeout_;
  std::atomic<uint64_t>* pulled_;
  absl::Mutex mutex_;
  uint64_t pieces_ ABSL_GUARDED_BY(mutex_) = 0;  // pieces (and the end) read so far
  bool stalled_ ABSL_GUARDED_BY(mutex_) = false;
  bool done_ ABSL_GUARDED_BY(mutex_) = false;
  std::thread watchdog_;  // last: starts once the members it reads exist
};

absl::StatusOr<std::shared_ptr<grpc::Channel>> Dial(const std::string& address, const DataPlaneOptions& options) {
  QSHARD_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> credentials,
                          MakeChannelCredentials(address, DataPlaneTls(options.tls), options.insecure,
                                                 [](const std::string&) {}));
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(static_cast<int>(options.max_slice_bytes + (size_t{1} << 20)));
  if (!DataPlaneTls(options.tls).cert.empty() && !options.peer_name.empty())
    arguments.SetSslTargetNameOverride(options.peer_name);
  return grpc::CreateCustomChannel(address, credentials, arguments);
}

PieceReader ReaderOf(RemoteNode& node) {
  return [&node](v1::StatisticsPiece& piece) { return node.Read(piece); };
}

}  // namespace

absl::StatusOr<GroupStatistics> PullAndReduce(int group, int shards, const std::vector<StatisticsSource>& sources,
                                              const DataPlaneOptions& options, StatisticsStore& own,
                                              const std::string& own_address, std::optional<size_t>* unreachable) {
  std::vector<std::unique_ptr<RemoteNode>> remote;
  std::vector<std::unique_ptr<SliceWriter>> local;
  std::vector<SlicedNode> nodes;
  for (size_t i = 0; i < sources.size(); ++i) {
    const StatisticsSource& source = sources[i];
    v1::PullRequest request;
    request.set_group(group);
    request.set_first_shard(source.first_shard);
    request.set_shard_count(source.shard_count);
    PieceReader read;
    if (source.address == own_address) {
      QSHARD_ASSIGN_OR_RETURN(std::shared_ptr<const GroupStatistics> value, own.Serve(request));
      SliceWriter& writer = *local.emplace_back(std::make_unique<SliceWriter>(std::move(value), options.max_slice_bytes));
      read = [&writer](v1::StatisticsPiece& piece) -> absl::StatusOr<bool> { return writer.Next(piece); };
    } else {
      auto channel = Dial(source.address, options);
      if (!channel.ok()) {
        if (unreachable != nullptr) *unreachable = i;
        return channel.status();
      }
      read = ReaderOf(*remote.emplace_back(std::make_unique<RemoteNode>(*channel, request, options)));
    }
    nodes.push_back({source.first_shard, source.shard_count, std::move(read)});
  }
  return ReduceSlices(nodes, shards, unreachable);
}

absl::StatusOr<GroupStatistics> PullReduced(int group, const std::string& address, const DataPlaneOptions& options) {
  QSHARD_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel, Dial(address, options));
  v1::PullRequest request;
  request.set_group(group);
  RemoteNode node(channel, request, options);
  auto reduced = ReduceSlices({{0, 1, ReaderOf(node)}}, 1);
  if (!reduced.ok())
    return WithContext(reduced.status(), absl::StrCat("the reduced statistics of group ", group, " at ", address));
  return reduced;
}

}  // namespace qshard
