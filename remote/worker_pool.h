// The coordinator's side of the workers' Connect streams: a gRPC WorkerService (callback API)
// that registers each worker that dials in, and hands the job runner RemoteWorkers — the
// WorkerClient interface over those streams. A worker holds a lease while frames (results or
// heartbeats) keep arriving; a closed stream or `lease` without a frame ends it, and calls on
// it fail with UNAVAILABLE.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "engine/worker_client.h"
#include "qshard.grpc.pb.h"

namespace qshard {

class WorkerConnection;  // one registered worker (worker_pool.cc)

struct WorkerPoolOptions {
  std::chrono::milliseconds lease{10000};
  size_t chunk_bytes = size_t{1} << 20;
  // Mutual TLS: a worker whose connection presented no verified client certificate is refused
  // with UNAUTHENTICATED (the TLS handshake already refused one that does not verify).
  bool require_client_certificate = false;
};

class WorkerPool : public v1::WorkerService::CallbackService {
 public:
  explicit WorkerPool(WorkerPoolOptions options = {}) : options_(options) {}
  ~WorkerPool() override;

  grpc::ServerBidiReactor<v1::WorkerFrame, v1::CoordinatorFrame>* Connect(
      grpc::CallbackServerContext* context) override;

  // The first `count` workers holding a lease, in order of registration, once that many have
  // registered; DEADLINE_EXCEEDED after `timeout`.
  absl::StatusOr<std::vector<std::unique_ptr<WorkerClient>>> AwaitWorkers(size_t count,
                                                                          std::chrono::milliseconds timeout);
  // Workers holding a lease now.
  std::vector<v1::WorkerHello> Workers();

  // Serialized task and result bytes moved over every stream so far (statistics and weights;
  // never activations).
  uint64_t bytes_to_workers() const { return bytes_to_workers_.load(); }
  uint64_t bytes_from_workers() const { return bytes_from_workers_.load(); }
  // Workers that registered so far (each registration grants a lease).
  uint64_t registrations() const { return registrations_.load(); }

 private:
  friend class WorkerConnection;
  void Register(const std::shared_ptr<WorkerConnection>& connection);

  WorkerPoolOptions options_;
  std::atomic<uint64_t> bytes_to_workers_ = 0;
  std::atomic<uint64_t> bytes_from_workers_ = 0;
  std::atomic<uint64_t> registrations_ = 0;
  std::mutex mutex_;
  std::condition_variable registered_;
  std::vector<std::shared_ptr<WorkerConnection>> connections_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace qshard
