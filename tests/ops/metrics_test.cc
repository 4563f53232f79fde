// The metrics objects in process: every series a fresh coordinator or worker exports exists at
// 0; jobs by state follow the journal; engine events land in their series; validation series
// are kept for the last kValidatedJobsKept jobs only; gRPC requests of unknown methods and odd
// codes stay in bounded labels; and /metrics is served, with bad addresses refused by flag.
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "coordinator/coordinator_metrics.h"
#include "gtest/gtest.h"
#include "metrics/metrics_server.h"
#include "prometheus/metric_family.h"
#include "remote/worker_metrics.h"
#include "tests/core/scoped_temp_dir.h"
#include "tests/ops/http_client.h"
#include "worker/methods/method_registry.h"

namespace qshard {
namespace {

using testing::ScopedTempDir;

// Every sample as "name{label=value,...}" → value; histograms as name_count and name_sum.
std::map<std::string, double> Samples(const MetricsRegistry& metrics) {
  std::map<std::string, double> samples;
  for (const prometheus::MetricFamily& family : metrics.Collect())
    for (const prometheus::ClientMetric& metric : family.metric) {
      std::vector<std::string> labels;
      for (const auto& label : metric.label) labels.push_back(absl::StrCat(label.name, "=", label.value));
      const std::string suffix = labels.empty() ? "" : absl::StrCat("{", absl::StrJoin(labels, ","), "}");
      switch (family.type) {
        case prometheus::MetricType::Counter:
          samples[family.name + suffix] = metric.counter.value;
          break;
        case prometheus::MetricType::Gauge:
          samples[family.name + suffix] = metric.gauge.value;
          break;
        case prometheus::MetricType::Histogram:
          samples[family.name + "_count" + suffix] = static_cast<double>(metric.histogram.sample_count);
          samples[family.name + "_sum" + suffix] = metric.histogram.sample_sum;
          break;
        default:
          break;
      }
    }
  return samples;
}

// How many samples' names start with `prefix`.
int CountOf(const std::map<std::string, double>& samples, const std::string& prefix) {
  int n = 0;
  for (const auto& [name, value] : samples) n += name.rfind(prefix, 0) == 0;
  return n;
}

// Each of `expected` is among `samples` with its value.
void ExpectSamples(const std::map<std::string, double>& samples, const std::map<std::string, double>& expected) {
  for (const auto& [name, value] : expected) {
    const auto found = samples.find(name);
    if (found == samples.end()) {
      ADD_FAILURE() << "no series " << name;
    } else {
      EXPECT_EQ(found->second, value) << name;
    }
  }
}

class CoordinatorMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto journal = Journal::Open(dir_.path());
    ASSERT_TRUE(journal.ok()) << journal.status();
    journal_ = *std::move(journal);
    metrics_ = std::make_unique<CoordinatorMetrics>(*journal_, pool_);
  }
  std::map<std::string, double> Samples() const { return qshard::Samples(*metrics_->registry()); }

  ScopedTempDir dir_;
  std::unique_ptr<Journal> journal_;
  WorkerPool pool_;
  std::unique_ptr<CoordinatorMetrics> metrics_;
};

TEST_F(CoordinatorMetricsTest, EverySeriesExistsAtZeroOnAFreshCoordinator) {
  const auto samples = Samples();
  for (const char* state : {"QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "CANCELLING"})
    EXPECT_EQ(samples.at(absl::StrCat("qshard_jobs{state=", state, "}")), 0) << state;
  for (const char* state : {"SUCCEEDED", "FAILED", "CANCELLED"})
    EXPECT_EQ(samples.at(absl::StrCat("qshard_job_duration_seconds_count{state=", state, "}")), 0);
  for (const MethodRegistration& method : RegisteredMethods()) {
    EXPECT_EQ(samples.at(absl::StrCat("qshard_block_solve_seconds_count{method=", std::string(method.name), "}")), 0);
    EXPECT_EQ(samples.at(absl::StrCat("qshard_linear_solve_seconds_count{method=", std::string(method.name), "}")), 0);
  }
  for (const char* name : {"qshard_retries_total{reason=damping}", "qshard_retries_total{reason=layer_redo}",
                           "qshard_workers_lost_total", "qshard_leases_held", "qshard_lease_grants_total",
                           "qshard_transfer_bytes_total{direction=to_workers}",
                           "qshard_transfer_bytes_total{direction=from_workers}"})
    EXPECT_EQ(samples.at(name), 0) << name;
  // JobService (5), WorkerService (1), health (2) and "other": 17 codes each.
  EXPECT_EQ(CountOf(samples, "qshard_grpc_requests_total"), 9 * 17);
  EXPECT_EQ(samples.at("qshard_grpc_requests_total{code=OK,method=SubmitJob,service=qshard.v1.JobService}"), 0);
  EXPECT_EQ(samples.at("qshard_grpc_requests_total{code=UNAUTHENTICATED,method=other,service=other}"), 0);
  EXPECT_EQ(CountOf(samples, "qshard_job_validation"), 0);  // no job validated yet
}

TEST_F(CoordinatorMetricsTest, JobsByStateFollowTheJournalAtEachScrape) {
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    auto submitted = journal_->Submit("", absl::StrCat("spec-", i));
    ASSERT_TRUE(submitted.ok()) << submitted.status();
    ids.push_back(submitted->job.job_id);
  }
  ASSERT_TRUE(journal_->Transition(ids[0], {v1::JOB_STATE_RUNNING, "started"}).ok());
  auto samples = Samples();
  EXPECT_EQ(samples.at("qshard_jobs{state=QUEUED}"), 2);
  EXPECT_EQ(samples.at("qshard_jobs{state=RUNNING}"), 1);
  ASSERT_TRUE(journal_->Transition(ids[0], {v1::JOB_STATE_SUCCEEDED, "done"}).ok());
  ASSERT_TRUE(journal_->Transition(ids[1], {v1::JOB_STATE_CANCELLED, "cancelled"}).ok());
  samples = Samples();
  EXPECT_EQ(samples.at("qshard_jobs{state=QUEUED}"), 1);
  EXPECT_EQ(samples.at("qshard_jobs{state=RUNNING}"), 0);
  EXPECT_EQ(samples.at("qshard_jobs{state=SUCCEEDED}"), 1);
  EXPECT_EQ(samples.at("qshard_jobs{state=CANCELLED}"), 1);
}

TEST_F(CoordinatorMetricsTest, EngineAndSchedulerEventsLandInTheirSeries) {
  JobObserver& observer = *metrics_;
  LinearReport report;
  report.seconds = 0.25;
  report.damp_retries = 2;
  observer.LinearSolved("gptq", report);
  observer.LinearSolved("zfold", report);
  observer.BlockSolved("gptq", 1.5);
  observer.WorkerLost();
  observer.LayerRedone();
  JobSpec spec;
  spec.method.method = "gptq";
  observer.JobEnded("job-1", spec, "FAILED", 3.0, nullptr);
  const auto samples = Samples();
  ExpectSamples(samples, {{"qshard_linear_solve_seconds_count{method=gptq}", 1},
                          {"qshard_linear_solve_seconds_sum{method=zfold}", 0.25},
                          {"qshard_block_solve_seconds_sum{method=gptq}", 1.5},
                          {"qshard_block_solve_seconds_count{method=aespa}", 0},
                          {"qshard_retries_total{reason=damping}", 4},
                          {"qshard_retries_total{reason=layer_redo}", 1},
                          {"qshard_workers_lost_total", 1},
                          {"qshard_job_duration_seconds_count{state=FAILED}", 1},
                          {"qshard_job_duration_seconds_sum{state=FAILED}", 3.0}});
  EXPECT_EQ(CountOf(samples, "qshard_job_validation"), 0);
}

TEST_F(CoordinatorMetricsTest, ValidationSeriesAreKeptForTheLastJobsOnly) {
  const int jobs = static_cast<int>(CoordinatorMetrics::kValidatedJobsKept) + 5;
  JobSpec spec;
  spec.method.method = "zfold";
  spec.method.spec.bits = 3;
  for (int i = 1; i <= jobs; ++i) {
    const nlohmann::json report = {{"validation",
                                    {{"perplexity", 20.0 + i},
                                     {"base_perplexity", 19.0},
                                     {"kl_divergence", 0.01 * i},
                                     {"top1_agreement", 0.9}}}};
    metrics_->JobEnded(absl::StrCat("job-", i), spec, "SUCCEEDED", 1.0, &report);
  }
  const auto samples = Samples();
  EXPECT_EQ(CountOf(samples, "qshard_job_validation_kl_nats"), CoordinatorMetrics::kValidatedJobsKept);
  EXPECT_EQ(CountOf(samples, "qshard_job_validation_"), 4 * CoordinatorMetrics::kValidatedJobsKept);
  EXPECT_FALSE(samples.count("qshard_job_validation_kl_nats{bits=3,job_id=job-5,method=zfold}"));  // dropped
  EXPECT_DOUBLE_EQ(samples.at(absl::StrCat("qshard_job_validation_kl_nats{bits=3,job_id=job-", jobs, ",method=zfold}")),
                   0.01 * jobs);
  EXPECT_EQ(samples.at("qshard_job_validation_perplexity{bits=3,job_id=job-6,method=zfold}"), 26.0);
  EXPECT_EQ(samples.at("qshard_job_duration_seconds_count{state=SUCCEEDED}"), jobs);
}

TEST_F(CoordinatorMetricsTest, UnknownMethodsAndCodesStayInBoundedLabels) {
  GrpcServerMetrics& grpc = metrics_->grpc();
  grpc.Count("/qshard.v1.JobService/GetJob", grpc::StatusCode::NOT_FOUND);
  grpc.Count("/some.Other/Method", grpc::StatusCode::OK);
  grpc.Count("/qshard.v1.JobService/GetJob", static_cast<grpc::StatusCode>(99));
  const auto samples = Samples();
  EXPECT_EQ(samples.at("qshard_grpc_requests_total{code=NOT_FOUND,method=GetJob,service=qshard.v1.JobService}"), 1);
  EXPECT_EQ(samples.at("qshard_grpc_requests_total{code=OK,method=other,service=other}"), 1);
  EXPECT_EQ(samples.at("qshard_grpc_requests_total{code=UNKNOWN,method=GetJob,service=qshard.v1.JobService}"), 1);
  EXPECT_EQ(CountOf(samples, "qshard_grpc_requests_total"), 9 * 17);
}

TEST(WorkerMetricsTest, EveryTaskKindAndCodeExistsAtZeroAndTasksCount) {
  WorkerMetrics metrics;
  v1::WorkerTask solve;
  solve.mutable_solve()->set_group(1);
  metrics.TaskDone(solve, absl::OkStatus(), 0.5);
  metrics.TaskDone(solve, absl::InternalError("x"), 0.25);
  metrics.TaskDone(v1::WorkerTask(), absl::OkStatus(), 1.0);  // no body: not a task kind
  metrics.TokensProcessed(128);
  metrics.SetConnected(true);
  metrics.Reconnected();
  *metrics.data_bytes_pulled() += 4096;
  const auto samples = Samples(*metrics.registry());
  const int task_kinds = v1::WorkerTask::descriptor()->FindOneofByName("body")->field_count();
  EXPECT_EQ(CountOf(samples, "qshard_worker_tasks_total"), task_kinds * 17);  // every WorkerTask kind × code
  ExpectSamples(samples, {{"qshard_worker_tasks_total{code=OK,task=solve}", 1},
                          {"qshard_worker_tasks_total{code=INTERNAL,task=solve}", 1},
                          {"qshard_worker_tasks_total{code=OK,task=start_job}", 0},
                          {"qshard_worker_task_seconds_sum{task=solve}", 0.75},
                          {"qshard_worker_task_seconds_count{task=finish_layer}", 0},
                          {"qshard_calibration_tokens_total", 128},
                          {"qshard_worker_connected", 1},
                          {"qshard_worker_reconnects_total", 1},
                          {"qshard_data_plane_bytes_total{direction=pulled}", 4096},
                          {"qshard_data_plane_bytes_total{direction=served}", 0}});
  *metrics.data_bytes_pulled() += 10;  // mirrored at each scrape, never counted twice
  EXPECT_EQ(Samples(*metrics.registry()).at("qshard_data_plane_bytes_total{direction=pulled}"), 4106);
}

TEST(MetricsServerTest, ServesTheRegistryAndRefusesBadAddressesByFlag) {
  WorkerMetrics metrics;
  auto server = MetricsServer::Start("127.0.0.1:0", metrics.registry());
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address = (*server)->address();
  const int port = std::stoi(address.substr(address.rfind(':') + 1));
  EXPECT_GT(port, 0);
  auto response = testing::HttpGet(port, "/metrics");
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 200);
  EXPECT_NE(response->body.find("qshard_worker_tasks_total{code=\"OK\",task=\"solve\"} 0"), std::string::npos)
      << response->body.substr(0, 2000);

  for (const std::string& bad : {std::string("no-port"), std::string(":9100"), std::string("127.0.0.1:"),
                                 address /* taken */}) {
    auto refused = MetricsServer::Start(bad, metrics.registry(), "--metrics-listen");
    ASSERT_FALSE(refused.ok()) << bad;
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(refused.status().message().find("--metrics-listen"), std::string::npos) << refused.status();
  }
}

}  // namespace
}  // namespace qshard
