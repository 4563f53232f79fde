// The worker process's side of the Connect stream (`qshard worker`): it registers with the
// coordinator, then runs each task it receives on a LocalWorker and sends the result back,
// heartbeating while a task runs. For the session's length it serves the statistics it holds to
// its peers (remote/statistics_service.h): a collection's partials, and the groups it reduced. Returns when the coordinator ends the stream (OK), refuses
// the worker (UNAUTHENTICATED: mutual TLS without a client certificate) or the connection
// breaks (UNAVAILABLE); a lost coordinator is the caller's to retry.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "grpcpp/channel.h"
#include "qshard.pb.h"
#include "remote/statistics_service.h"
#include "worker/device/cuda_device.h"

namespace qshard {

class WorkerMetrics;

struct WorkerSessionOptions {
  v1::WorkerHello hello;
  // The worker's device (OpenDevice; null: the CPU): what each job runs there is its DevicePlan.
  std::shared_ptr<CudaDevice> device;
  WorkerMetrics* metrics = nullptr;  // told of each task and of the data plane's bytes; null: not counted
  int heartbeat_ms = 1000;
  size_t chunk_bytes = size_t{1} << 20;
  // The session's data plane: where it serves the statistics it holds (its address goes into
  // the hello) and how it dials its peers'.
  DataPlaneOptions data;
};

absl::Status RunWorkerSession(const std::shared_ptr<grpc::Channel>& channel, const WorkerSessionOptions& options);

}  // namespace qshard
