// The metrics pipeline end to end on loopback: a coordinator and two `qshard worker`s serve
// /metrics (--metrics-listen), the real Prometheus server (Debian's `prometheus`) scrapes them
// every second with deploy/prometheus's rules loaded, and a small GPTQ job with validation
// runs. Through Prometheus' HTTP query API: every series exists at 0 before the job, counters
// increase and histograms fill during it. Then every PromQL expression of the Grafana
// dashboards and of the alerting rules is evaluated there: one that errors or names a metric
// that no process exports fails, so a renamed metric fails CI; so does a metric that
// docs/operations.md names and no process exports. Every wait is bounded.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "qshard.pb.h"
#include "tests/coordinator/child_process.h"
#include "tests/core/scoped_temp_dir.h"
#include "tests/ops/http_client.h"

namespace qshard {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::ChildProcess;
using Clock = std::chrono::steady_clock;

constexpr char kData[] = "../shared/data";
constexpr auto kWait = std::chrono::seconds(30);

// `name` on PATH, or "" when it is not installed.
std::string FindProgram(const std::string& name) {
  const char* path = getenv("PATH");
  for (const absl::string_view dir : absl::StrSplit(path == nullptr ? "" : path, ':')) {
    const std::string candidate = absl::StrCat(dir, "/", name);
    if (!dir.empty() && ::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

// The PromQL expressions of a dashboard: every "expr" of its panels' targets, with the panel's
// title for the failure message.
void CollectExpressions(const json& node, const std::string& where, std::vector<std::pair<std::string, std::string>>& out) {
  if (node.is_object()) {
    const std::string here = node.contains("title") && node["title"].is_string()
                                 ? absl::StrCat(where, " / ", node["title"].get<std::string>())
                                 : where;
    if (node.contains("expr") && node["expr"].is_string()) out.emplace_back(node["expr"], here);
    for (const auto& [key, child] : node.items()) CollectExpressions(child, here, out);
  } else if (node.is_array()) {
    for (const json& child : node) CollectExpressions(child, where, out);
  }
}

class PrometheusScrapeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    prometheus_ = FindProgram("prometheus");
    if (prometheus_.empty())
      GTEST_SKIP() << "the Prometheus server is not installed (Debian package `prometheus`, in scripts/install-deps)";
    data_ = fs::canonical(kData).string();
    ASSERT_TRUE(fs::exists(data_ + "/tinystories-656k/model.safetensors")) << "needs " << kData;
  }

  // The "data" of Prometheus' answer to GET `path`, or why there is none.
  absl::StatusOr<json> Api(const std::string& path) {
    auto response = testing::HttpGet(prometheus_port_, path);
    if (!response.ok()) return response.status();
    const json body = json::parse(response->body, nullptr, /*allow_exceptions=*/false);
    if (!body.is_object() || body.value("status", "") != "success")
      return absl::InvalidArgumentError(absl::StrCat(path, ": HTTP ", response->status, ": ", response->body));
    return body["data"];
  }
  absl::StatusOr<json> Query(const std::string& expr) {
    return Api("/api/v1/query?query=" + testing::UrlEncode(expr));
  }
  // The first sample's value of an instant query; nullopt when empty or failed.
  std::optional<double> Value(const std::string& expr) {
    const absl::StatusOr<json> data = Query(expr);
    if (!data.ok()) return std::nullopt;
    const json& result = (*data)["result"];
    if ((*data)["resultType"] == "scalar") return std::stod(result[1].get<std::string>());
    if (!result.is_array() || result.empty()) return std::nullopt;
    return std::stod(result[0]["value"][1].get<std::string>());
  }
  // Polls `expr` until its value satisfies `good`, for up to kWait; returns the last value.
  std::optional<double> WaitFor(const std::string& expr, const std::function<bool(double)>& good) {
    std::optional<double> value;
    for (const auto end = Clock::now() + kWait; Clock::now() < end;) {
      value = Value(expr);
      if (value && good(*value)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return value;
  }
  void ExpectEventually(const std::string& expr, double expected) {
    EXPECT_EQ(WaitFor(expr, [&](double v) { return v == expected; }), expected) << expr;
  }

  // Starts the coordinator (jobs on two workers), the workers and Prometheus scraping them.
  void StartAll() {
    fs::create_directories(dir_.Child("outputs"));
    coordinator_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{"coordinator", "--listen", "127.0.0.1:0", "--state-dir", dir_.Child("state"),
                                 "--allowed-root", data_, "--allowed-root", dir_.Child("outputs"), "--workers", "2",
                                 "--metrics-listen", "127.0.0.1:0", "--json"},
        dir_.Child("coordinator"));
    json started;
    for (const auto end = Clock::now() + kWait; Clock::now() < end && started.is_null();) {
      const std::string out = coordinator_->Stdout();
      if (out.find('\n') != std::string::npos) started = json::parse(out);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_TRUE(started.contains("metrics")) << "the coordinator did not start: " << coordinator_->Stderr();
    address_ = started["listening"];
    std::vector<std::string> targets = {absl::StrCat("'", started["metrics"].get<std::string>(), "'")}, workers;
    for (int i = 0; i < 2; ++i) {
      const std::string metrics = absl::StrCat("127.0.0.1:", testing::FreeLoopbackPort());
      workers_.push_back(std::make_unique<ChildProcess>(
          std::vector<std::string>{"worker", "--coordinator", address_, "--name", absl::StrCat("w", i), "--threads",
                                   "1", "--retry-seconds", "5", "--metrics-listen", metrics},
          dir_.Child(absl::StrCat("worker-", i))));
      workers.push_back(absl::StrCat("'", metrics, "'"));
    }
    testing::WriteTextFile(
        dir_.Child("prometheus.yml"),
        absl::StrCat("global: {scrape_interval: 1s, evaluation_interval: 1s}\n", "rule_files: ['",
                     fs::absolute("deploy/prometheus").string(), "/*.yml']\n", "scrape_configs:\n",
                     "  - job_name: qshard-coordinator\n    static_configs: [{targets: [",
                     absl::StrJoin(targets, ", "), "]}]\n", "  - job_name: qshard-worker\n    static_configs: [{targets: [",
                     absl::StrJoin(workers, ", "), "]}]\n"));
    prometheus_port_ = testing::FreeLoopbackPort();
    prometheus_process_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{"--config.file=" + dir_.Child("prometheus.yml"),
                                 "--storage.tsdb.path=" + dir_.Child("tsdb"),
                                 absl::StrCat("--web.listen-address=127.0.0.1:", prometheus_port_), "--log.level=warn"},
        dir_.Child("prometheus"), prometheus_);
    bool ready = false;
    for (const auto end = Clock::now() + kWait; Clock::now() < end && !ready;) {
      auto response = testing::HttpGet(prometheus_port_, "/-/ready");
      ready = response.ok() && response->status == 200;
      if (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ASSERT_TRUE(ready) << "Prometheus did not start: " << prometheus_process_->Stderr();
    ASSERT_EQ(WaitFor("count(up == 1)", [](double v) { return v == 3; }), 3)
        << "Prometheus did not scrape the coordinator and both workers: " << Api("/api/v1/targets").value_or(json());
  }

  testing::ScopedTempDir dir_;
  std::string prometheus_, data_, address_;
  int prometheus_port_ = 0;
  std::unique_ptr<ChildProcess> coordinator_, prometheus_process_;
  std::vector<std::unique_ptr<ChildProcess>> workers_;
};

TEST_F(PrometheusScrapeTest, SeriesExistFromStartMoveWithAJobAndEveryExpressionEvaluates) {
  StartAll();
  if (HasFatalFailure()) return;

  // Fresh servers: every job state, method, task kind and status code is there, at 0.
  EXPECT_EQ(Value("count(qshard_jobs)"), 6);
  EXPECT_EQ(Value("sum(qshard_jobs)"), 0);
  EXPECT_GE(Value("count(qshard_block_solve_seconds_count)").value_or(0), 4);  // gptq, zfold, aespa, rtn at least
  EXPECT_EQ(Value("max(qshard_block_solve_seconds_count)"), 0);
  EXPECT_EQ(Value("count(qshard_job_duration_seconds_count)"), 3);
  EXPECT_EQ(Value("count(qshard_retries_total)"), 2);
  const int task_kinds = v1::WorkerTask::descriptor()->FindOneofByName("body")->field_count();
  EXPECT_EQ(Value("count(qshard_worker_tasks_total)"), 2 * task_kinds * 17);
  EXPECT_EQ(Value("sum(qshard_worker_tasks_total)"), 0);
  EXPECT_EQ(Value("count(qshard_grpc_requests_total{service=\"qshard.v1.JobService\"})"), 5 * 17);
  EXPECT_EQ(Value("sum(qshard_calibration_tokens_total)"), 0);
  ExpectEventually("qshard_leases_held", 2);

  std::vector<std::string> submit = {
      "submit", "--coordinator", address_, "--wait", "--json", "--model", data_ + "/tinystories-656k", "--out",
      dir_.Child("outputs/gptq"), "--method", "gptq", "--bits", "4", "--group-size", "32", "--calib-text",
      data_ + "/wikitext-2-raw/wiki.test.raw", "--nsamples", "4", "--calib-shards", "4", "--seqlen", "64",
      "--threads", "1", "--validate-text", data_ + "/wikitext-2-raw/wiki.test.raw", "--validate-windows", "2",
      "--validate-seqlen", "64"};
  ChildProcess job(submit, dir_.Child("submit"));
  ASSERT_EQ(job.Wait(std::chrono::seconds(120)), 0) << job.Stderr();

  // The job as Prometheus saw it: TinyStories-656K has 2 layers of 7 linears.
  ExpectEventually("qshard_jobs{state=\"SUCCEEDED\"}", 1);
  ExpectEventually("sum(qshard_block_solve_seconds_count{method=\"gptq\"})", 2);
  ExpectEventually("sum(qshard_linear_solve_seconds_count{method=\"gptq\"})", 14);
  ExpectEventually("sum(qshard_job_duration_seconds_count{state=\"SUCCEEDED\"})", 1);
  ExpectEventually("sum(qshard_grpc_requests_total{method=\"SubmitJob\", code=\"OK\"})", 1);
  // Counters that increased, on each worker: 4 windows of 64 tokens in all, through 2 layers.
  ExpectEventually("count(increase(qshard_calibration_tokens_total[1m]) > 0)", 2);
  ExpectEventually("sum(qshard_calibration_tokens_total)", 4 * 64 * 2);
  EXPECT_GE(WaitFor("sum(increase(qshard_worker_tasks_total{task=\"solve\", code=\"OK\"}[1m]))",
                    [](double v) { return v > 0; }).value_or(0), 1);
  EXPECT_GT(WaitFor("min(qshard_transfer_bytes_total)", [](double v) { return v > 0; }).value_or(0), 0);
  // Histograms with samples: a median between the first and the last bucket bound.
  const auto median = WaitFor("histogram_quantile(0.5, sum by (le) (qshard_block_solve_seconds_bucket{method=\"gptq\"}))",
                              [](double v) { return std::isfinite(v) && v > 0; });
  EXPECT_TRUE(median && std::isfinite(*median) && *median > 0) << median.value_or(-1);
  EXPECT_GT(WaitFor("sum(qshard_worker_task_seconds_sum{task=\"start_job\"})", [](double v) { return v > 0; }).value_or(0), 0);
  // The validation's quality, labelled by job.
  const auto kl = WaitFor("qshard_job_validation_kl_nats{job_id=\"job-1\", method=\"gptq\", bits=\"4\"}",
                          [](double v) { return v > 0; });
  EXPECT_TRUE(kl && *kl > 0 && *kl < 10) << kl.value_or(-1);
  const auto top1 = Value("qshard_job_validation_top1_agreement_ratio{job_id=\"job-1\"}");
  EXPECT_TRUE(top1 && *top1 > 0 && *top1 <= 1) << top1.value_or(-1);

  // Every metric name Prometheus has, to check the expressions' names against.
  const absl::StatusOr<json> names = Api("/api/v1/label/__name__/values");
  ASSERT_TRUE(names.ok()) << names.status();
  const std::set<std::string> known(names->begin(), names->end());

  std::vector<std::pair<std::string, std::string>> expressions;  // expression, where it is
  for (const auto& file : fs::directory_iterator("deploy/grafana/dashboards")) {
    std::ifstream in(file.path());
    const json dashboard = json::parse(in, nullptr, /*allow_exceptions=*/false);
    ASSERT_TRUE(dashboard.is_object()) << file.path() << " is not JSON";
    CollectExpressions(dashboard, file.path().filename().string(), expressions);
  }
  const size_t dashboard_expressions = expressions.size();
  EXPECT_GE(dashboard_expressions, 20u);

  // The rules as Prometheus loaded them, once each was evaluated at least once.
  size_t alerts_in_files = 0;
  for (const auto& file : fs::directory_iterator("deploy/prometheus")) {
    std::ifstream in(file.path());
    for (std::string line; std::getline(in, line);) alerts_in_files += line.find("- alert:") != std::string::npos;
  }
  json rules;
  for (const auto end = Clock::now() + kWait; Clock::now() < end;) {
    const absl::StatusOr<json> data = Api("/api/v1/rules");
    ASSERT_TRUE(data.ok()) << data.status();
    rules = json::array();
    bool evaluated = true;
    for (const json& group : (*data)["groups"])
      for (const json& rule : group["rules"]) {
        rules.push_back(rule);
        evaluated = evaluated && rule.value("health", "unknown") != "unknown";
      }
    if (evaluated && !rules.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ(rules.size(), alerts_in_files) << "Prometheus did not load every rule of deploy/prometheus";
  for (const json& rule : rules) {
    EXPECT_EQ(rule.value("health", ""), "ok") << rule.value("name", "") << ": " << rule.value("lastError", "");
    expressions.emplace_back(rule["query"], "rule " + rule.value("name", ""));
  }

  // Every metric docs/operations.md names is exported (a histogram by its _count series).
  const std::regex metric_name(R"(\bqshard_[a-z0-9_]+)");
  std::ifstream docs_file("docs/operations.md");
  const std::string docs((std::istreambuf_iterator<char>(docs_file)), std::istreambuf_iterator<char>());
  int documented = 0;
  for (std::sregex_iterator it(docs.begin(), docs.end(), metric_name), end; it != end; ++it, ++documented)
    EXPECT_TRUE(known.count(it->str()) || known.count(it->str() + "_count"))
        << "docs/operations.md names " << it->str() << ", which no process exports";
  EXPECT_GE(documented, 19);

  for (const auto& [dashboard_expr, where] : expressions) {
    // Grafana's own variables, as Grafana would expand them at a 1 s scrape interval.
    const std::string expr = absl::StrReplaceAll(dashboard_expr, {{"$__rate_interval", "20s"}});
    EXPECT_EQ(expr.find('$'), std::string::npos) << where << ": a variable the test does not expand: " << expr;
    const absl::StatusOr<json> result = Query(expr);
    EXPECT_TRUE(result.ok()) << where << ": " << result.status();
    for (std::sregex_iterator it(expr.begin(), expr.end(), metric_name), end; it != end; ++it)
      EXPECT_TRUE(known.count(it->str())) << where << ": no process exports " << it->str() << " (in " << expr << ")";
  }
}

}  // namespace
}  // namespace qshard
