#include "coordinator/coordinator_metrics.h"

#include "coordinator/job_state.h"
#include "worker/methods/method_registry.h"

namespace qshard {
namespace {

// Bucket bounds in seconds: a block 10 ms to 1 h, a linear 1 ms to 15 min, a job 1 s to 41 h.
const prometheus::Histogram::BucketBoundaries kBlockBuckets = ExponentialBuckets(0.01, 2.5, 15);
const prometheus::Histogram::BucketBoundaries kLinearBuckets = ExponentialBuckets(0.001, 2.5, 16);
const prometheus::Histogram::BucketBoundaries kJobBuckets = ExponentialBuckets(1, 2.5, 14);

std::vector<std::string> ServedMethods() {
  std::vector<std::string> methods = MethodsOfService(v1::JobService::service_full_name());
  for (const std::string& m : MethodsOfService(v1::WorkerService::service_full_name())) methods.push_back(m);
  // The default health service is not in the protobuf pool; probes call it.
  methods.push_back("/grpc.health.v1.Health/Check");
  methods.push_back("/grpc.health.v1.Health/Watch");
  return methods;
}

}  // namespace

CoordinatorMetrics::CoordinatorMetrics(Journal& journal, WorkerPool& pool)
    : grpc_(*metrics_, ServedMethods()) {
  MetricsRegistry& m = *metrics_;
  auto& jobs = m.Gauge("qshard_jobs", "Jobs in the journal by state (QUEUED is the queue depth)");
  const google::protobuf::EnumDescriptor* states = v1::JobState_descriptor();
  for (int i = 0; i < states->value_count(); ++i) {
    const auto state = static_cast<JobState>(states->value(i)->number());
    if (state == v1::JOB_STATE_UNSPECIFIED) continue;
    jobs_[JobStateName(state)] = &jobs.Add({{"state", JobStateName(state)}});
  }
  auto& job_seconds =
      m.Histogram("qshard_job_duration_seconds", "Running time of the jobs that ended, by final state");
  for (JobState state : {v1::JOB_STATE_SUCCEEDED, v1::JOB_STATE_FAILED, v1::JOB_STATE_CANCELLED})
    job_seconds_[JobStateName(state)] = &job_seconds.Add({{"state", JobStateName(state)}}, kJobBuckets);

  auto& blocks = m.Histogram("qshard_block_solve_seconds",
                             "Time to quantize one decoder layer (block), by method; _count is blocks solved");
  auto& linears = m.Histogram("qshard_linear_solve_seconds",
                              "Solver time of one quantized linear, by method; _count is linears solved");
  for (const MethodRegistration& method : RegisteredMethods()) {
    const std::string name(method.name);
    methods_[name] = {&blocks.Add({{"method", name}}, kBlockBuckets), &linears.Add({{"method", name}}, kLinearBuckets)};
  }
  auto& retries = m.Counter("qshard_retries_total", "Work done again, by reason");
  damp_retries_ = &retries.Add({{"reason", "damping"}});
  layer_redos_ = &retries.Add({{"reason", "layer_redo"}});
  workers_lost_ = &m.Counter("qshard_workers_lost_total", "Workers a running job lost (calls failed UNAVAILABLE)").Add({});
  leases_ = &m.Gauge("qshard_leases_held", "Registered workers holding a lease now").Add({});
  lease_grants_ = std::make_unique<MirroredCounter>(
      m.Counter("qshard_lease_grants_total", "Worker registrations (each grants a lease)").Add({}));
  auto& bytes = m.Counter("qshard_transfer_bytes_total",
                          "Serialized task and result bytes moved between the coordinator and its workers");
  bytes_to_workers_ = std::make_unique<MirroredCounter>(bytes.Add({{"direction", "to_workers"}}));
  bytes_from_workers_ = std::make_unique<MirroredCounter>(bytes.Add({{"direction", "from_workers"}}));

  validation_["perplexity"] =
      &m.Gauge("qshard_job_validation_perplexity", "Perplexity of the job's checkpoint on its validation text");
  validation_["base_perplexity"] = &m.Gauge("qshard_job_validation_base_perplexity",
                                            "Perplexity of the job's unquantized model on the same windows");
  validation_["kl_divergence"] =
      &m.Gauge("qshard_job_validation_kl_nats", "Mean KL(base || quantized) per predicted token, in nats");
  validation_["top1_agreement"] = &m.Gauge("qshard_job_validation_top1_agreement_ratio",
                                           "Fraction of positions where base and quantized argmax agree");
  m.OnScrape([this, &journal, &pool] { Refresh(journal, pool); });
}

void CoordinatorMetrics::Refresh(Journal& journal, WorkerPool& pool) {
  const auto counts = journal.CountByState();
  if (counts.ok())  // a failed read keeps the last values rather than reporting zeros
    for (auto& [name, gauge] : jobs_) {
      const auto state = ParseJobState(name);
      const auto found = state.ok() ? counts->find(*state) : counts->end();
      gauge->Set(found == counts->end() ? 0.0 : static_cast<double>(found->second));
    }
  leases_->Set(static_cast<double>(pool.Workers().size()));
  lease_grants_->Sync(pool.registrations());
  bytes_to_workers_->Sync(pool.bytes_to_workers());
  bytes_from_workers_->Sync(pool.bytes_from_workers());
}

void CoordinatorMetrics::LinearSolved(const std::string& method, const LinearReport& report) {
  const auto found = methods_.find(method);
  if (found != methods_.end()) found->second.linear_seconds->Observe(report.seconds);
  damp_retries_->Increment(report.damp_retries);
}

void CoordinatorMetrics::BlockSolved(const std::string& method, double seconds) {
  const auto found = methods_.find(method);
  if (found != methods_.end()) found->second.block_seconds->Observe(seconds);
}

void CoordinatorMetrics::WorkerLost() { workers_lost_->Increment(); }

void CoordinatorMetrics::LayerRedone() { layer_redos_->Increment(); }

void CoordinatorMetrics::JobEnded(const std::string& job_id, const JobSpec& spec, const std::string& state,
                                  double seconds, const nlohmann::json* report) {
  const auto found = job_seconds_.find(state);
  if (found != job_seconds_.end()) found->second->Observe(seconds);
  if (report != nullptr && report->contains("validation")) AddValidation(job_id, spec, (*report)["validation"]);
}

void CoordinatorMetrics::AddValidation(const std::string& job_id, const JobSpec& spec,
                                       const nlohmann::json& validation) {
  const prometheus::Labels labels = {
      {"job_id", job_id}, {"method", spec.method.method}, {"bits", std::to_string(spec.method.spec.bits)}};
  Validated added{job_id, {}};
  for (auto& [field, family] : validation_)
    if (validation.contains(field) && validation[field].is_number()) {
      prometheus::Gauge& gauge = family->Add(labels);
      gauge.Set(validation[field].get<double>());
      added.gauges.emplace_back(family, &gauge);
    }
  std::lock_guard<std::mutex> lock(mu_);
  validated_.push_back(std::move(added));
  while (validated_.size() > kValidatedJobsKept) {
    for (auto& [family, gauge] : validated_.front().gauges) family->Remove(gauge);
    validated_.pop_front();
  }
}

}  // namespace qshard
