// A worker process's metrics (docs/operations.md, "Metrics"): tasks by kind and outcome, task
// seconds, calibration tokens run through layers, the coordinator connection and reconnects,
// and the statistics bytes its data plane moved.
// Owned by the `qshard worker` command and served with --metrics-listen; every series exists
// from start-up with value 0 (each task kind and code included).
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "metrics/metrics_registry.h"
#include "qshard.pb.h"

namespace qshard {

class WorkerMetrics {
 public:
  WorkerMetrics();
  WorkerMetrics(const WorkerMetrics&) = delete;  // its registry's scrape hook points here
  WorkerMetrics& operator=(const WorkerMetrics&) = delete;

  std::shared_ptr<MetricsRegistry> registry() const { return metrics_; }

  // `task` took `seconds` and ended with `status`.
  void TaskDone(const v1::WorkerTask& task, const absl::Status& status, double seconds);
  // Calibration tokens the worker ran through one decoder layer.
  void TokensProcessed(int64_t tokens) { tokens_->Increment(static_cast<double>(tokens)); }
  void SetConnected(bool connected) { connected_->Set(connected ? 1 : 0); }
  // Running totals of statistics bytes the worker's data plane served to its peers and pulled
  // from them (DataPlaneOptions::bytes_served/bytes_pulled point here); mirrored into
  // qshard_data_plane_bytes_total at each scrape.
  std::atomic<uint64_t>* data_bytes_served() { return &data_served_; }
  std::atomic<uint64_t>* data_bytes_pulled() { return &data_pulled_; }
  void Reconnected() { reconnects_->Increment(); }

 private:
  struct PerTask {
    prometheus::Histogram* seconds;
    CodeCounters codes;
  };

  std::shared_ptr<MetricsRegistry> metrics_ = std::make_shared<MetricsRegistry>();
  std::map<int, PerTask> tasks_;  // by WorkerTask body field number
  prometheus::Counter* tokens_;
  prometheus::Gauge* connected_;
  prometheus::Counter* reconnects_;
  std::atomic<uint64_t> data_served_ = 0, data_pulled_ = 0;
  std::unique_ptr<MirroredCounter> data_served_counter_, data_pulled_counter_;
};

}  // namespace qshard
