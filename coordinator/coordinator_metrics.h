// The coordinator's metrics (docs/operations.md, "Metrics"): jobs by state from the journal,
// job and block durations, linear solves by method, retries, lost workers, leases and bytes
// from the worker pool, gRPC requests, and the last validations' quality. One instance, owned
// by the Coordinator; the engine and the scheduler report to it as a JobObserver. Every
// series that does not name a job exists from start-up with value 0.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "coordinator/journal.h"
#include "engine/job_observer.h"
#include "metrics/grpc_server_metrics.h"
#include "metrics/metrics_registry.h"
#include "remote/worker_pool.h"

namespace qshard {

class CoordinatorMetrics : public JobObserver {
 public:
  // Jobs whose validation series are kept: the rule that bounds the job_id label.
  static constexpr size_t kValidatedJobsKept = 20;

  // Reads `journal` and `pool` at each scrape; both must outlive the scrapes.
  CoordinatorMetrics(Journal& journal, WorkerPool& pool);

  std::shared_ptr<MetricsRegistry> registry() const { return metrics_; }
  GrpcServerMetrics& grpc() { return grpc_; }

  void LinearSolved(const std::string& method, const LinearReport& report) override;
  void BlockSolved(const std::string& method, double seconds) override;
  void WorkerLost() override;
  void LayerRedone() override;
  void JobEnded(const std::string& job_id, const JobSpec& spec, const std::string& state, double seconds,
                const nlohmann::json* report) override;

 private:
  struct PerMethod {
    prometheus::Histogram* block_seconds;
    prometheus::Histogram* linear_seconds;
  };
  // The validation gauges of one job.
  struct Validated {
    std::string job_id;
    std::vector<std::pair<prometheus::Family<prometheus::Gauge>*, prometheus::Gauge*>> gauges;
  };

  void Refresh(Journal& journal, WorkerPool& pool);
  void AddValidation(const std::string& job_id, const JobSpec& spec, const nlohmann::json& validation);

  std::shared_ptr<MetricsRegistry> metrics_ = std::make_shared<MetricsRegistry>();
  GrpcServerMetrics grpc_;
  std::map<std::string, prometheus::Gauge*> jobs_;  // by state name
  std::map<std::string, prometheus::Histogram*> job_seconds_;  // by final state name
  std::map<std::string, PerMethod> methods_;
  prometheus::Counter* damp_retries_;
  prometheus::Counter* layer_redos_;
  prometheus::Counter* workers_lost_;
  prometheus::Gauge* leases_;
  std::unique_ptr<MirroredCounter> lease_grants_, bytes_to_workers_, bytes_from_workers_;
  // name → family of the per-job validation gauges
  std::map<std::string, prometheus::Family<prometheus::Gauge>*> validation_;
  std::mutex mu_;
  std::deque<Validated> validated_ ABSL_GUARDED_BY(mu_);  // oldest first
};

}  // namespace qshard
