// Serves a MetricsRegistry as Prometheus text on http://ADDR/metrics through prometheus-cpp's
// Exposer (`--metrics-listen ADDR` on the coordinator and the workers). Port 0 picks a free
// port; address() tells which.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "metrics/metrics_registry.h"
#include "prometheus/exposer.h"

namespace qshard {

class MetricsServer {
 public:
  // INVALID_ARGUMENT naming `flag` when `listen` is not host:port or cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(const std::string& listen,
                                                              std::shared_ptr<MetricsRegistry> metrics,
                                                              const std::string& flag = "--metrics-listen");

  // host:port with the port bound.
  const std::string& address() const { return address_; }

 private:
  MetricsServer() = default;

  std::shared_ptr<MetricsRegistry> metrics_;  // the exposer holds it weakly
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::string address_;
};

}  // namespace qshard
