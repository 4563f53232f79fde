#include "remote/worker_metrics.h"

namespace qshard {

WorkerMetrics::WorkerMetrics() {
  MetricsRegistry& m = *metrics_;
  auto& counts = m.Counter("qshard_worker_tasks_total", "Tasks the worker finished, by kind and status code");
  auto& seconds = m.Histogram("qshard_worker_task_seconds", "Time the worker spent on one task, by kind");
  // The kinds are the fields of WorkerTask's `body` oneof, named as in the proto.
  const google::protobuf::OneofDescriptor* body = v1::WorkerTask::descriptor()->FindOneofByName("body");
  for (int i = 0; i < body->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* field = body->field(i);
    tasks_[field->number()] = {&seconds.Add({{"task", field->name()}}, ExponentialBuckets(0.001, 2.5, 16)),
                               CodeCounters(counts, {{"task", field->name()}})};
  }
  tokens_ = &m.Counter("qshard_calibration_tokens_total",
                       "Calibration tokens run through a decoder layer (tokens x layers)")
                 .Add({});
  connected_ = &m.Gauge("qshard_worker_connected", "1 while the worker holds a stream to its coordinator").Add({});
  reconnects_ = &m.Counter("qshard_worker_reconnects_total", "Sessions with the coordinator that broke and were retried")
                     .Add({});
  auto& data = m.Counter("qshard_data_plane_bytes_total",
                         "Statistics bytes (serialized pieces) the worker's data plane served to its peers or pulled from them");
  data_served_counter_ = std::make_unique<MirroredCounter>(data.Add({{"direction", "served"}}));
  data_pulled_counter_ = std::make_unique<MirroredCounter>(data.Add({{"direction", "pulled"}}));
  m.OnScrape([this] {
    data_served_counter_->Sync(data_served_.load());
    data_pulled_counter_->Sync(data_pulled_.load());
  });
}

void WorkerMetrics::TaskDone(const v1::WorkerTask& task, const absl::Status& status, double seconds) {
  const auto found = tasks_.find(task.body_case());
  if (found == tasks_.end()) return;  // an empty task: refused before it ran
  found->second.seconds->Observe(seconds);
  found->second.codes.Count(static_cast<int>(status.code()));
}

}  // namespace qshard
