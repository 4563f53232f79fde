// The workers' data plane: what a worker holds for its peers (StatisticsStore: the partials of
// its last collection, and the groups it reduced as their owner), the server that streams them
// in bounded slices (proto StatisticsService, callback API), and the pulls: an owner's, which
// adds a group's partials from the workers holding them along the shard tree as they arrive,
// and a solver's, which reads the reduced group from its owner (remote/statistics_slices.h).
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "engine/statistics_tree.h"
#include <chrono>

#include "engine/worker_client.h"
#include "grpcpp/server.h"
#include "qshard.pb.h"
#include "remote/transport_security.h"

namespace qshard {

struct DataPlaneOptions {
  // Plaintext only on loopback (conventions.md); TLS with tls.cert/tls.key, and then peers
  // must present a client certificate signed by tls.ca when one is given (mutual TLS). Peers
  // are dialed with the same files.
  std::string listen = "127.0.0.1:0";
  TlsFiles tls;
  bool insecure = false;
  // Under TLS, the name a peer's certificate must carry, checked instead of the peer's address
  // (workers sharing one certificate; empty: the address).
  std::string peer_name;
  size_t max_slice_bytes = kMaxStatisticsSliceBytes;
  std::atomic<uint64_t>* bytes_served = nullptr;  // if given: bytes of pieces served to peers
  std::atomic<uint64_t>* bytes_pulled = nullptr;  // if given: bytes of pieces pulled from peers
  // A pull that receives nothing for this long is cancelled and its holder named unreachable:
  // a holder that hangs without dying (stopped, deadlocked, partitioned) must not stall its
  // owner for ever. A 64 MiB slice takes about 5 s at 100 Mb/s.
  std::chrono::milliseconds stall_timeout{120'000};
};

class StatisticsStore {
 public:
  // The tree nodes of a collection of `groups` (each node one value per group), replacing the
  // previous collection's. A node's value of a group is served once — its owner pulls it once
  // per collection — and dropped then.
  void HoldPartials(const std::vector<int>& groups, std::vector<ShardStatistics> nodes);
  // `group`'s reduced statistics, for this worker's solves and its peers' until Release(group).
  void HoldReduced(int group, GroupStatistics statistics);
  absl::StatusOr<std::shared_ptr<const GroupStatistics>> Reduced(int group);
  void Release(int group);
  void Clear();  // a new layer
  // What `request` asks for; NOT_FOUND when it is not held (or was served already).
  absl::StatusOr<std::shared_ptr<const GroupStatistics>> Serve(const v1::PullRequest& request);

 private:
  std::mutex mutex_;
  std::map<int, size_t> position_ ABSL_GUARDED_BY(mutex_);  // group → its place in a node's values
  std::map<std::pair<int, int>, std::vector<std::shared_ptr<const GroupStatistics>>> partials_
      ABSL_GUARDED_BY(mutex_);  // by (first shard, shard count)
  std::map<int, std::shared_ptr<const GroupStatistics>> reduced_ ABSL_GUARDED_BY(mutex_);
};

class StatisticsServer {
 public:
  static absl::StatusOr<std::unique_ptr<StatisticsServer>> Start(StatisticsStore& store, const DataPlaneOptions& options,
                                                                 const std::function<void(const std::string&)>& log);
  ~StatisticsServer();
  const std::string& address() const { return address_; }

 private:
  class Service;
  StatisticsServer() = default;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
};

// The owner's pull: `group`'s nodes from `sources`, added along the tree of `shards` shards as
// their slices arrive; nodes held at `own_address` are read from `own` without the network.
// When a source could not be read, `unreachable` is set to its index.
absl::StatusOr<GroupStatistics> PullAndReduce(int group, int shards, const std::vector<StatisticsSource>& sources,
                                              const DataPlaneOptions& options, StatisticsStore& own,
                                              const std::string& own_address, std::optional<size_t>* unreachable);

// A solver's pull: the reduced statistics of `group` from its owner at `address`.
absl::StatusOr<GroupStatistics> PullReduced(int group, const std::string& address, const DataPlaneOptions& options);

}  // namespace qshard
