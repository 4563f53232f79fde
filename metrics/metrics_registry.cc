#include "metrics/metrics_registry.h"

#include "absl/status/status.h"

namespace qshard {

prometheus::Family<prometheus::Counter>& MetricsRegistry::Counter(const std::string& name, const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(*registry_);
}

prometheus::Family<prometheus::Gauge>& MetricsRegistry::Gauge(const std::string& name, const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(*registry_);
}

prometheus::Family<prometheus::Histogram>& MetricsRegistry::Histogram(const std::string& name,
                                                                       const std::string& help) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(*registry_);
}

void MetricsRegistry::OnScrape(std::function<void()> refresh) {
  std::lock_guard<std::mutex> lock(mu_);
  refreshers_.push_back(std::move(refresh));
}

std::vector<prometheus::MetricFamily> MetricsRegistry::Collect() const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& refresh : refreshers_) refresh();
  return registry_->Collect();
}

prometheus::Histogram::BucketBoundaries ExponentialBuckets(double first, double factor, int count) {
  prometheus::Histogram::BucketBoundaries bounds;
  for (double bound = first; static_cast<int>(bounds.size()) < count; bound *= factor) bounds.push_back(bound);
  return bounds;
}

void MirroredCounter::Sync(uint64_t total) {
  if (total > seen_) counter_.Increment(static_cast<double>(total - seen_));
  seen_ = total;
}

CodeCounters::CodeCounters(prometheus::Family<prometheus::Counter>& family, prometheus::Labels labels) {
  for (size_t code = 0; code < by_code_.size(); ++code) {
    labels["code"] = absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
    by_code_[code] = &family.Add(labels);
  }
}

void CodeCounters::Count(int code) {
  const bool known = code >= 0 && code < static_cast<int>(by_code_.size());
  by_code_[known ? code : static_cast<int>(absl::StatusCode::kUnknown)]->Increment();
}

}  // namespace qshard
