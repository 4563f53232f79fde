// One process's Prometheus metrics: a prometheus-cpp registry owned by the server object that
// serves it (never a global; Triton's metrics.h has one owner too), plus hooks that refresh
// values read from elsewhere (the journal, the worker pool) just before each scrape.
// docs/operations.md ("Metrics") lists every metric and the naming rules.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace qshard {

class MetricsRegistry : public prometheus::Collectable {
 public:
  prometheus::Family<prometheus::Counter>& Counter(const std::string& name, const std::string& help);
  prometheus::Family<prometheus::Gauge>& Gauge(const std::string& name, const std::string& help);
  prometheus::Family<prometheus::Histogram>& Histogram(const std::string& name, const std::string& help);

  // Runs `refresh` before every scrape (scrapes are serialized).
  void OnScrape(std::function<void()> refresh);

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  mutable std::mutex mu_;
  std::vector<std::function<void()>> refreshers_;
};

// `count` bucket bounds from `first`, each `factor` times the one before.
prometheus::Histogram::BucketBoundaries ExponentialBuckets(double first, double factor, int count);

// A Prometheus counter that follows a running total kept elsewhere (an atomic of the worker
// pool): Sync adds what the total gained since the last call.
class MirroredCounter {
 public:
  explicit MirroredCounter(prometheus::Counter& counter) : counter_(counter) {}
  void Sync(uint64_t total);

 private:
  prometheus::Counter& counter_;
  uint64_t seen_ = 0;
};

// One counter per status code, OK to UNAUTHENTICATED (absl's and gRPC's codes are the same
// numbers), under `labels` plus code="OK"...: all of them exist from start-up.
class CodeCounters {
 public:
  CodeCounters() = default;
  CodeCounters(prometheus::Family<prometheus::Counter>& family, prometheus::Labels labels);
  // A code out of range counts as UNKNOWN.
  void Count(int code);

 private:
  std::array<prometheus::Counter*, 17> by_code_{};
};

}  // namespace qshard
