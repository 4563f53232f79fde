// Test helper: a coordinator-side WorkerPool on a free loopback port and `count` workers
// dialling it from threads of this process (RunWorkerSession, each with its own LocalWorker on
// the CPU or on a device the test gives), small chunks and slices so that messages are cut
// into many.
#pragma once

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "grpcpp/grpcpp.h"
#include "remote/worker_metrics.h"
#include "remote/worker_pool.h"
#include "remote/worker_session.h"
#include "worker/device/cuda_device.h"
#include "worker/device/device.h"

namespace qshard::testing {

// A coordinator-side pool on a free loopback port with `count` workers connected to it.
class Cluster {
 public:
  // `devices`: worker i's device (a stand-in CudaDevice), where given and not null; else the CPU.
  explicit Cluster(int count, std::vector<std::shared_ptr<CudaDevice>> devices = {}) : devices_(std::move(devices)) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&pool_);
    server_ = builder.BuildAndStart();
    for (int i = 0; i < count; ++i) metrics_.push_back(std::make_unique<WorkerMetrics>());
    for (int i = 0; i < count; ++i)
      sessions_.emplace_back([this, i] {
        WorkerSessionOptions options;
        options.hello.set_name("w" + std::to_string(i));
        const bool on_device = static_cast<size_t>(i) < devices_.size() && devices_[i] != nullptr;
        options.hello.set_device(on_device ? DeviceName(devices_[i]->device()) : "cpu");
        if (on_device) options.device = devices_[i];
        options.chunk_bytes = 64 << 10;  // many chunks per solution
        options.data.max_slice_bytes = 20 << 10;  // many slices per Hessian (down_proj's: 58)
        options.metrics = metrics_[i].get();  // counts the data plane's bytes
        session_status_[i] = RunWorkerSession(
            grpc::CreateChannel("127.0.0.1:" + std::to_string(port_), grpc::InsecureChannelCredentials()), options);
      });
  }
  ~Cluster() {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    for (std::thread& t : sessions_) t.join();
  }
  WorkerPool& pool() { return pool_; }
  // Bytes the workers served each other (statistics; never through the pool), or pulled from
  // each other, as qshard_data_plane_bytes_total{direction} reads to a scrape of each worker.
  double data_bytes(const std::string& direction = "served") const {
    double total = 0.0;
    for (const auto& metrics : metrics_)
      for (const prometheus::MetricFamily& family : metrics->registry()->Collect())
        if (family.name == "qshard_data_plane_bytes_total")
          for (const prometheus::ClientMetric& metric : family.metric)
            if (metric.label.size() == 1 && metric.label[0].value == direction) total += metric.counter.value;
    return total;
  }

 private:
  std::vector<std::shared_ptr<CudaDevice>> devices_;
  WorkerPool pool_;
  std::vector<std::unique_ptr<WorkerMetrics>> metrics_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::vector<std::thread> sessions_;
  absl::Status session_status_[8];
};

}  // namespace qshard::testing
