// The worker's device seam end to end on the CPU: a stand-in CudaDevice whose forward pass, sums
// and solver are the CPU's own gives a job the bytes of the CPU path (so windows, tokens, shards,
// the true-sequential passes, the weights swapped in — Z-Fold's folds included — and the solves
// travel the device route intact), each method uses the device as its DevicePlan says (GPTQ
// whole, --mse too; Z-Fold, aespa (its attention statistics included) and FlattenQuant (its
// channel maxima) calibrate there and solve on the CPU, but for Z-Fold's and aespa's GPTQ solves
// and aespa's AdaRound, which the stand-in runs with the CPU's solver and learner behind the
// device seam; RTN and FineQuant never touch it),
// device errors fail the job with their context, a model the device cannot compute or a device
// that cannot open is refused before any output, and a job never mixes device kinds.
#include <atomic>
#include <filesystem>
#include <map>
#include <utility>

#include "engine/job_runner.h"
#include "engine/local_worker.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "core/status.h"
#include "tests/core/scoped_temp_dir.h"
#include "tests/engine/forwarding_worker.h"
#include "tests/engine/tiny_jobs.h"
#include "tests/remote/in_process_cluster.h"
#include "worker/device/cuda_device.h"
#include "worker/model/attention.h"

namespace qshard {
namespace {

using ::testing::HasSubstr;
using testing::ReadFileBytes;

// What the stand-in device did, and the call at which it fails (0: never).
struct StandInLog {
  int forwards = 0, sums = 0, solvers = 0, windows_calls = 0, runs = 0, held = 0, reads = 0, loads = 0, updates = 0;
  // Solve calls on the device's GPTQ solver, and those with what Z-Fold and aespa add (fixed
  // grids, ζ, Hessians per block of rows, the values before rounding kept).
  std::atomic<int> solves = 0, solves_with_extras = 0;
  int attention_stats = 0, attention_windows = 0;  // NewAttentionStats, AddResidentWindow calls
  int learners = 0, roundings = 0;                 // MakeRoundingLearner, Learn calls
  int fail_rounding_at = 0;
  int fail_windows_at = 0, fail_run_at = 0, fail_attention_at = 0;
  bool fail_attention_download = false;
  ForwardStatistics forward_statistics;  // what NewForward was told
  ModelConfig forward_config;            // and of which model
  // The stand-in's "device memory" for statistics: the sums' elements alive now and at most (dim²
  // each), those alive when attention statistics were made or beside them (-1: never), and the
  // device solves and roundings that found any statistics alive.
  std::atomic<int64_t> live_sum_elements = 0;
  int64_t peak_sum_elements = 0, peak_sum_elements_beside_attention = -1;
  std::atomic<int> live_attention = 0, solves_beside_statistics = 0;
};

// Counts a device solve or rounding that runs while statistics are alive on the device.
void NoteSolve(StandInLog* log) {
  if (log->live_sum_elements > 0 || log->live_attention > 0) ++log->solves_beside_statistics;
}

// A sum kept on the host as the CPU collector would keep it; its "device memory" is the host's.
class HostSum : public OffHostHessianSum {
 public:
  HostSum(int64_t dim, StandInLog* log) : sum_(dim), log_(log) {
    const int64_t live = log_->live_sum_elements += dim * dim;
    log_->peak_sum_elements = std::max(log_->peak_sum_elements, live);
    if (log_->live_attention > 0)
      log_->peak_sum_elements_beside_attention = std::max(log_->peak_sum_elements_beside_attention, live);
  }
  ~HostSum() override { log_->live_sum_elements -= sum_.dim * sum_.dim; }
  int64_t dim() const override { return sum_.dim; }
  absl::Status AddResidentWindows(const float* x, int64_t rows, int64_t window) override {
    if (++log_->windows_calls == log_->fail_windows_at)
      return absl::ResourceExhaustedError("stand-in device: out of memory");
    sum_.AddWindows(x, rows, window);
    return absl::OkStatus();
  }
  absl::Status Download(HessianSum& host) override {
    if (host.sum.size() != sum_.sum.size()) return absl::InternalError("host buffer of the wrong size");
    std::copy(sum_.sum.begin(), sum_.sum.end(), host.sum.begin());
    host.dim = sum_.dim;
    host.tokens = sum_.tokens;
    host.abs_max = sum_.abs_max;
    return absl::OkStatus();
  }

 private:
  HessianSum sum_;
  StandInLog* log_;
};

// aespa's attention statistics kept by the CPU's collector, from the window's attention input and
// rotated q/k handed over as the device hands them (the probabilities formed here, as the CUDA
// device forms them from q and k); its "device memory" is the host's.
class HostAttention : public OffHostAttentionStats {
 public:
  HostAttention(const DecoderModel& model, int64_t seq, StandInLog* log)
      : model_(model), seq_(seq), log_(log), collector_(0, model.config(), &model.pool()) {
    ++log_->live_attention;
    log_->peak_sum_elements_beside_attention =
        std::max(log_->peak_sum_elements_beside_attention, log_->live_sum_elements.load());
  }
  ~HostAttention() override { --log_->live_attention; }
  absl::Status AddResidentWindow(const float* x, const float* q, const float* k) override {
    if (++log_->attention_windows == log_->fail_attention_at)
      return absl::ResourceExhaustedError("stand-in device: no room for the attention statistics");
    const ModelConfig& c = model_.config();
    const auto copy = [&](const float* from, int64_t width) {
      return Tensor({seq_, width}, std::vector<float>(from, from + seq_ * width));
    };
    const Tensor queries = copy(q, c.num_heads * c.head_dim), keys = copy(k, c.num_kv_heads * c.head_dim);
    collector_.OnLinearInput(0, "self_attn.q_proj", copy(x, c.hidden_size));
    Tensor probabilities;
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim)));
    CausalSoftmaxProbabilities(queries, keys, {1, seq_, c.num_heads, c.num_kv_heads, c.head_dim}, scale,
                               model_.pool(), probabilities);
    collector_.OnAttention(0, probabilities, queries, keys, 1, seq_);
    return absl::OkStatus();
  }
  absl::Status Download(AttentionStats& host) override {
    if (log_->fail_attention_download)
      return absl::DataLossError("stand-in device: the attention statistics did not come back");
    AttentionStats taken = collector_.Take();
    if (taken.seq != host.seq || taken.values.size() != host.values.size())
      return absl::InternalError("attention statistics of the wrong shape");
    host = std::move(taken);
    return absl::OkStatus();
  }

 private:
  const DecoderModel& model_;
  int64_t seq_;
  StandInLog* log_;
  AttentionStatsCollector collector_;
};

// The q and k (after RoPE) the CPU's attention of a window reads.
struct QueryKeyCapture : LayerObserver {
  bool WantsAttention(int) const override { return true; }
  void OnAttention(int, const Tensor&, const Tensor& queries, const Tensor& keys, int64_t, int64_t) override {
    q = queries;
    k = keys;
  }
  Tensor q, k;
};

// The device forward pass computed with the CPU's stages (decoder_layers.h), one window at a time
// as the CUDA one runs, each group input handed to its sum where it was computed.
class CpuForward : public ForwardDevice {
 public:
  CpuForward(const DecoderModel& model, int64_t seqlen, StandInLog* log, const DeviceMemoryPlan& plan)
      : model_(model), seqlen_(seqlen), log_(log), plan_(plan) {}

  absl::Status HoldShard(int shard, const Tensor& hidden) override {
    ++log_->held;
    shards_[shard] = hidden;
    return absl::OkStatus();
  }
  absl::Status ReadShard(int shard, Tensor& hidden) override {
    ++log_->reads;
    const Tensor& held = shards_.at(shard);
    if (held.shape() != hidden.shape()) return absl::InternalError("ReadShard: wrong shape");
    std::copy(held.data(), held.data() + held.size(), hidden.data());
    return absl::OkStatus();
  }
  absl::Status LoadLayer(int layer, const DecoderLayerWeights& weights) override {
    ++log_->loads;
    layer_ = layer;
    weights_ = weights;
    return absl::OkStatus();
  }
  absl::Status UpdateLinears(const DecoderLayerWeights& weights, const std::vector<std::string>& linears) override {
    for (const std::string& name : linears) weights_.linears[name] = weights.linear(name);
    log_->updates += static_cast<int>(linears.size());
    return absl::OkStatus();
  }
  absl::Status Run(int shard, const ForwardPass& pass, const std::array<OffHostHessianSum*, 4>& sums,
                   OffHostAttentionStats* attention) override {
    if (++log_->runs == log_->fail_run_at)
      return absl::ResourceExhaustedError("stand-in device: no room for the layer");
    Tensor& hidden = shards_.at(shard);
    const int64_t width = hidden.cols();
    for (int64_t start = 0; start < hidden.rows(); start += seqlen_) {
      float* rows = hidden.data() + start * width;
      Tensor residual({seqlen_, width}, std::vector<float>(rows, rows + seqlen_ * width));
      Tensor inputs[4];
      for (int g = pass.first; g <= pass.last; ++g) {
        inputs[g] = model_.GroupInput(layer_, weights_, g, residual, g % 2 == 1 ? inputs[g - 1] : Tensor(), 1, seqlen_);
        if (sums[g] != nullptr) QSHARD_RETURN_IF_ERROR(sums[g]->AddResidentWindows(inputs[g].data(), seqlen_, seqlen_));
        if (attention != nullptr && g == 0) {
          QueryKeyCapture capture;
          model_.ObserveAttention(layer_, weights_, inputs[0], 1, seqlen_, capture);
          QSHARD_RETURN_IF_ERROR(attention->AddResidentWindow(inputs[0].data(), capture.q.data(), capture.k.data()));
        }
        if (AddsOutput(pass, g))
          model_.AddGroupOutput(layer_, weights_, g, inputs[g], residual, 1, seqlen_);
      }
      std::copy(residual.data(), residual.data() + residual.size(), rows);
    }
    return absl::OkStatus();
  }
  DeviceMemoryPlan MemoryPlan() const override {
    DeviceMemoryPlan plan = plan_;
    plan.shards_on_device = static_cast<int>(shards_.size());  // the stand-in never spills
    return plan;
  }

 private:
  const DecoderModel& model_;
  int64_t seqlen_;
  StandInLog* log_;
  DeviceMemoryPlan plan_;
  std::map<int, Tensor> shards_;
  int layer_ = -1;
  DecoderLayerWeights weights_;
};

// AdaRound behind the device seam: the CPU's learner, counted, failing at its call.
class CountingLearner : public RoundingLearner {
 public:
  explicit CountingLearner(StandInLog* log) : log_(log) {}
  absl::StatusOr<RoundingCandidates> Learn(const RoundingProblem& problem, const AdaRoundOptions& options) const override {
    if (++log_->roundings == log_->fail_rounding_at)
      return absl::ResourceExhaustedError("stand-in device: no room for AdaRound");
    NoteSolve(log_);
    return CpuRoundingLearner().Learn(problem, options);
  }

 private:
  StandInLog* log_;
};

// GPTQ behind the device seam: the CPU's solver, its calls counted.
class CountingSolver : public Solver {
 public:
  CountingSolver(std::unique_ptr<Solver> solver, StandInLog* log) : solver_(std::move(solver)), log_(log) {}
  std::string_view method() const override { return solver_->method(); }
  bool needs_hessian() const override { return solver_->needs_hessian(); }
  absl::StatusOr<QuantizedLinear> Solve(const LayerProblem& problem) const override {
    ++log_->solves;
    NoteSolve(log_);
    if (problem.fixed_grids != nullptr || !problem.column_scale.empty() || problem.hessians.size() > 1 ||
        problem.keep_unrounded)
      ++log_->solves_with_extras;
    return solver_->Solve(problem);
  }

 private:
  std::unique_ptr<Solver> solver_;
  StandInLog* log_;
};

class StandInDevice : public CudaDevice {
 public:
  const Device& device() const override { return device_; }
  std::string Describe() const override { return "cuda:0 (stand-in)"; }
  absl::StatusOr<std::unique_ptr<OffHostHessianSum>> NewHessianSum(int64_t dim) override {
    ++log.sums;
    return std::make_unique<HostSum>(dim, &log);
  }
  absl::StatusOr<std::unique_ptr<Solver>> MakeGptqSolver(const QuantSpec& spec) override {
    ++log.solvers;
    QSHARD_ASSIGN_OR_RETURN(std::unique_ptr<Solver> solver, MakeSolver("gptq", spec));
    return std::unique_ptr<Solver>(new CountingSolver(std::move(solver), &log));
  }
  absl::StatusOr<std::unique_ptr<RoundingLearner>> MakeRoundingLearner() override {
    ++log.learners;
    return std::make_unique<CountingLearner>(&log);
  }
  absl::StatusOr<std::unique_ptr<OffHostAttentionStats>> NewAttentionStats(const ModelConfig& config,
                                                                         int64_t seq) override {
    ++log.attention_stats;
    if (model_ == nullptr || model_->config().hidden_size != config.hidden_size)
      return absl::InternalError("not the forward pass's model");
    return std::make_unique<HostAttention>(*model_, seq, &log);
  }
  absl::StatusOr<std::unique_ptr<ForwardDevice>> NewForward(const DecoderModel& model, int64_t seqlen,
                                                            const ForwardStatistics& statistics) override {
    ++log.forwards;
    log.forward_statistics = statistics;
    log.forward_config = model.config();
    if (!forward_refusal.ok()) return forward_refusal;
    model_ = &model;
    return std::make_unique<CpuForward>(model, seqlen, &log, plan);
  }

  StandInLog log;
  DeviceMemoryPlan plan;  // what its forward pass says it chose
  absl::Status forward_refusal;  // what NewForward answers instead of a forward pass

 private:
  Device device_{Device::Kind::kCuda, 0};
  const DecoderModel* model_ = nullptr;  // NewForward's
};

JobSpec Small(const std::string& method, const std::string& out) {
  JobSpec spec = tiny_jobs::Job(method, 4, out, /*nsamples=*/6, /*seqlen=*/64);
  spec.method.spec.group_size = 32;
  spec.method.zfold_max_iters = 1;
  spec.method.aespa_adaround_iters = 20;
  spec.execution.batch_windows = 2;
  return spec;
}

// A Small job's passes over its 4 shards under sequential propagation: 5 per layer (groups 0, 1,
// 2, 3, then the MLP's output added), 4 in the last layer (its output read by nobody).
constexpr int kSequentialRuns = 4 * (5 + 4);

// quant_report.json's device_roles (`rounding` only for aespa with AdaRound, `gptq_solves` only
// where Z-Fold's or aespa's GPTQ solves run apart from the rest of the solve).
nlohmann::json Roles(const char* calibration, const char* solves, const char* rounding = nullptr,
                     const char* gptq_solves = nullptr) {
  nlohmann::json roles = {{"calibration", calibration}, {"solves", solves}};
  if (rounding != nullptr) roles["rounding"] = rounding;
  if (gptq_solves != nullptr) roles["gptq_solves"] = gptq_solves;
  return roles;
}

// The square of each calibration group's input width (q/k/v, o, the MLP's, its down projection):
// the largest, and their total.
struct GroupSquares {
  int64_t widest = 0, total = 0;
};
GroupSquares GroupSquaresOf(const ModelConfig& c) {
  GroupSquares squares;
  for (const int64_t w : {c.hidden_size, c.num_heads * c.head_dim, c.hidden_size, c.intermediate_size}) {
    squares.widest = std::max(squares.widest, w * w);
    squares.total += w * w;
  }
  return squares;
}

// Runs `spec` on the CPU (out_dir + "-cpu") and on one worker with a stand-in device (out_dir):
// the device job's report, having checked that both checkpoints have the same bytes.
absl::StatusOr<nlohmann::json> RunBothWays(const JobSpec& spec, const std::shared_ptr<StandInDevice>& device) {
  JobSpec cpu = spec;
  cpu.out_dir += "-cpu";
  auto cpu_report = RunEmbeddedJob(cpu, JobEvents());
  if (!cpu_report.ok()) return WithContext(cpu_report.status(), absl::StrCat("the CPU job (needs ", tiny_jobs::kModel, ")"));
  LocalWorker worker(0, false, device);
  auto report = RunJob(spec, {&worker}, JobEvents());
  if (!report.ok()) return report;
  const std::string bytes = ReadFileBytes(cpu.out_dir + "/model.safetensors");
  EXPECT_FALSE(bytes.empty());
  EXPECT_TRUE(bytes == ReadFileBytes(spec.out_dir + "/model.safetensors")) << spec.method.method;
  return report;
}

TEST(DeviceJobTest, TheDeviceRouteGivesTheCpuBytes) {
  testing::ScopedTempDir dir;
  for (const Propagation propagation : {Propagation::kSequential, Propagation::kParallel}) {
    const bool sequential = propagation == Propagation::kSequential;
    const std::string cpu_dir = dir.Child(absl::StrCat("cpu", static_cast<int>(propagation)));
    const std::string device_dir = dir.Child(absl::StrCat("device", static_cast<int>(propagation)));
    JobSpec cpu = Small("gptq", cpu_dir), on_device = Small("gptq", device_dir);
    cpu.calibration.propagation = on_device.calibration.propagation = propagation;
    auto cpu_report = RunEmbeddedJob(cpu, JobEvents());
    ASSERT_TRUE(cpu_report.ok()) << cpu_report.status() << " (needs " << tiny_jobs::kModel << ")";
    EXPECT_EQ((*cpu_report)["devices"], nlohmann::json::array({"cpu"}));
    EXPECT_EQ((*cpu_report)["device_roles"], Roles("cpu", "cpu"));

    auto device = std::make_shared<StandInDevice>();
    LocalWorker worker(0, false, device);
    auto report = RunJob(on_device, {&worker}, JobEvents());
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_EQ((*report)["devices"], nlohmann::json::array({"cuda:0"}));
    EXPECT_EQ((*report)["device_roles"], Roles("cuda", "cuda"));
    const StandInLog& log = device->log;
    EXPECT_EQ(log.forwards, 1);
    EXPECT_EQ(log.solvers, 1);
    // 2 layers × 4 groups × 4 shards, each shard's sum made on the device and fed there.
    EXPECT_EQ(log.sums, 2 * 4 * 4);
    EXPECT_GT(log.windows_calls, 0);
    // The shards' hidden states went to the device once and never came back; each layer was
    // loaded once, and under sequential propagation each of its 7 linears was swapped in once
    // solved; a layer is 5 passes over each shard (groups 0, 1, 2, 3, then the MLP's output;
    // the last layer's 4, its output read by nobody), or one under parallel propagation.
    EXPECT_EQ(log.held, 4);
    EXPECT_EQ(log.reads, 0);
    EXPECT_EQ(log.loads, 2);
    EXPECT_EQ(log.updates, sequential ? 2 * 7 : 0);
    EXPECT_EQ(log.runs, sequential ? kSequentialRuns : 2 * 4);
    // What the device bound (LayerDeviceBytes) rests on: NewForward knows the propagation; one
    // shard's sums are alive at a time, of one group under sequential propagation and of all four
    // under parallel; none is alive while a solve runs.
    EXPECT_EQ(log.forward_statistics.all_groups, !sequential);
    EXPECT_FALSE(log.forward_statistics.attention);
    const GroupSquares squares = GroupSquaresOf(log.forward_config);
    ASSERT_LT(squares.widest, squares.total);
    EXPECT_EQ(log.peak_sum_elements, sequential ? squares.widest : squares.total);
    EXPECT_EQ(log.live_sum_elements, 0);
    EXPECT_EQ(log.solves_beside_statistics, 0);
    const std::string bytes = ReadFileBytes(cpu_dir + "/model.safetensors");
    ASSERT_FALSE(bytes.empty());
    EXPECT_TRUE(bytes == ReadFileBytes(device_dir + "/model.safetensors"));
  }
}

TEST(DeviceJobTest, RestartableDeviceWorkersGiveTheCpuBytes) {
  // Two workers that can restart a layer: each reads its shards' layer inputs back from the
  // device as a layer begins. Under Z-Fold and aespa one worker searches a group's ζ, both solve
  // its linears (aespa's q/k/v by head), and each folds the solution into its own device's copy
  // of the layer; aespa's attention statistics are each worker's shards' partials, merged.
  testing::ScopedTempDir dir;
  for (const std::string method : {"gptq", "zfold", "aespa"}) {
    auto cpu_report = RunEmbeddedJob(Small(method, dir.Child(method + "-cpu")), JobEvents());
    ASSERT_TRUE(cpu_report.ok()) << cpu_report.status() << " (needs " << tiny_jobs::kModel << ")";
    auto first = std::make_shared<StandInDevice>(), second = std::make_shared<StandInDevice>();
    LocalWorker a(0, true, first), b(0, true, second);
    auto report = RunJob(Small(method, dir.Child(method)), {&a, &b}, JobEvents());
    ASSERT_TRUE(report.ok()) << method << ": " << report.status();
    const bool folds = method != "gptq";
    EXPECT_EQ((*report)["device_roles"], Roles("cuda", folds ? "cpu" : "cuda", method == "aespa" ? "cuda" : nullptr,
                                               folds ? "cuda" : nullptr))
        << method;
    // Every linear's GPTQ solve (aespa: once per head part its worker solves) went to a device.
    EXPECT_GE(first->log.solves + second->log.solves, 2 * 7) << method;
    for (const StandInDevice* device : {first.get(), second.get()}) {
      EXPECT_EQ(device->log.solvers, 1) << method;
      EXPECT_EQ(device->log.reads, 2 * 2) << method;  // 2 layers × its 2 shards
      // Each layer, then (Z-Fold, aespa) after each norm fold.
      EXPECT_EQ(device->log.loads, 2 * (folds ? 3 : 1)) << method;
      EXPECT_EQ(device->log.attention_stats, method == "aespa" ? 2 * 2 : 0) << method;
      EXPECT_EQ(device->log.learners, method == "aespa" ? 1 : 0) << method;
    }
    EXPECT_TRUE(ReadFileBytes(dir.Child(method + "-cpu") + "/model.safetensors") ==
                ReadFileBytes(dir.Child(method) + "/model.safetensors"))
        << method;
  }
}

// A worker lost at its `dies_at`-th statistics call (UNAVAILABLE), as a remote one would be.
class DyingWorker : public testing::ForwardingWorker {
 public:
  DyingWorker(WorkerClient& inner, int dies_at) : ForwardingWorker(inner), dies_at_(dies_at) {}
  absl::StatusOr<std::vector<ShardStatistics>> CollectStatistics(const std::vector<int>& groups,
                                                                 bool attention) override {
    if (++calls_ >= dies_at_) return absl::UnavailableError("stand-in worker lost");
    return ForwardingWorker::CollectStatistics(groups, attention);
  }

 private:
  int dies_at_;
  int calls_ = 0;
};

TEST(DeviceJobTest, AWorkerLostMidJobHasItsShardsReplayedOnADeviceWithTheCpuBytes) {
  // The second worker is lost at layer 1's first statistics: the first adopts its shards, hands
  // them to its device, replays layer 0 over them there, and restarts layer 1 from its own
  // shards' layer inputs (read back from the device as the layer began). Under aespa the lost
  // call is the one that collects the attention statistics, which the restart collects again.
  testing::ScopedTempDir dir;
  for (const std::string method : {"gptq", "aespa"}) {
    auto cpu_report = RunEmbeddedJob(Small(method, dir.Child(method + "-cpu")), JobEvents());
    ASSERT_TRUE(cpu_report.ok()) << cpu_report.status() << " (needs " << tiny_jobs::kModel << ")";
    auto survivor_device = std::make_shared<StandInDevice>(), lost_device = std::make_shared<StandInDevice>();
    LocalWorker survivor(0, true, survivor_device), lost(0, true, lost_device);
    DyingWorker dying(lost, /*dies_at=*/5);
    auto report = RunJob(Small(method, dir.Child(method)), {&survivor, &dying}, JobEvents());
    ASSERT_TRUE(report.ok()) << method << ": " << report.status();
    const StandInLog& log = survivor_device->log;
    EXPECT_EQ(log.held, 2 + 2 + 4) << method;  // its own shards, the adopted ones, all four again at the restart
    // GPTQ: layers 0 and 1, the replayed layer 0 and back to 1, layer 1 again (aespa adds its folds).
    if (method == "gptq") {
      EXPECT_EQ(log.loads, 2 + 1 + 1 + 1);
    }
    EXPECT_TRUE(ReadFileBytes(dir.Child(method + "-cpu") + "/model.safetensors") ==
                ReadFileBytes(dir.Child(method) + "/model.safetensors"))
        << method;
  }
}

TEST(DeviceJobTest, ADeviceErrorFailsTheJobNamingItsLayerAndShard) {
  testing::ScopedTempDir dir;
  auto device = std::make_shared<StandInDevice>();
  device->log.fail_windows_at = 5;
  LocalWorker worker(0, false, device);
  auto report = RunJob(Small("gptq", dir.Child("failed")), {&worker}, JobEvents());
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(report.status().message(), HasSubstr("stand-in device: out of memory"));
  EXPECT_THAT(report.status().message(), HasSubstr("layer 0 shard "));

  // The forward pass's own error: the 23rd pass is layer 1's first (group 0's) over shard 2.
  auto forward_fails = std::make_shared<StandInDevice>();
  forward_fails->log.fail_run_at = 23;
  LocalWorker second(0, false, forward_fails);
  report = RunJob(Small("gptq", dir.Child("failed_forward")), {&second}, JobEvents());
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(report.status().message(), HasSubstr("layer 1 shard 2: stand-in device: no room for the layer"));
}

TEST(DeviceJobTest, ZfoldSearchesAndFoldsOnTheCpuAndSolvesGptqOnTheDeviceWithTheCpuBytes) {
  testing::ScopedTempDir dir;
  // Z-Fold on the whole model: ζ folded into both norms (the device reloads the layer) and into
  // the quantized v_proj's and up_proj's scales (their weights go up again with o_proj's and
  // down_proj's).
  auto device = std::make_shared<StandInDevice>();
  auto report = RunBothWays(Small("zfold", dir.Child("zfold")), device);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ((*report)["device_roles"], Roles("cuda", "cpu", nullptr, "cuda"));
  EXPECT_EQ(device->log.forwards, 1);
  // Its GPTQ solves, on the searched grids with ζ, on the device's solver.
  EXPECT_EQ(device->log.solvers, 1);
  EXPECT_EQ(device->log.solves, 2 * 7);
  EXPECT_EQ(device->log.solves_with_extras, 2 * 7);
  EXPECT_EQ(device->log.sums, 2 * 4 * 4);
  EXPECT_EQ(device->log.loads, 2 * 3);        // each layer, then after each norm fold
  EXPECT_EQ(device->log.updates, 2 * (2 + 2));  // o_proj + v_proj, down_proj + up_proj
  // A fold recomputes nothing more on the device (it caches no activation): GPTQ's passes.
  EXPECT_EQ(device->log.runs, kSequentialRuns);

  // q/k/v and gate/up partly skipped: no norm fold; down_proj's ζ goes into the rows of the
  // full-precision up_proj, which must reach the device before the MLP's output is added.
  auto skipping = std::make_shared<StandInDevice>();
  JobSpec skip = Small("zfold", dir.Child("zfold-skip"));
  skip.skip = {"self_attn.k_proj", "mlp.up_proj"};
  report = RunBothWays(skip, skipping);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(skipping->log.loads, 2);
  EXPECT_EQ(skipping->log.updates, 2 * (2 + 2 + 1 + 2));  // q,v; o,v; gate; down,up
  EXPECT_EQ(skipping->log.runs, kSequentialRuns);
}

TEST(DeviceJobTest, GptqWithMseRunsWholeOnTheDeviceWithTheCpuBytes) {
  testing::ScopedTempDir dir;
  auto device = std::make_shared<StandInDevice>();
  JobSpec mse = Small("gptq", dir.Child("mse"));
  mse.method.spec.mse_clip = true;
  auto report = RunBothWays(mse, device);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ((*report)["device_roles"], Roles("cuda", "cuda"));
  EXPECT_EQ(device->log.solvers, 1);
  EXPECT_EQ(device->log.solves, 2 * 7);  // 2 layers × 7 linears
  EXPECT_EQ(device->log.sums, 2 * 4 * 4);
  EXPECT_EQ(device->log.runs, kSequentialRuns);
}

TEST(DeviceJobTest, AespaCalibratesSolvesGptqAndRoundsOnTheDeviceWithTheCpuBytes) {
  // The attention statistics come from the pass that computes group 0's input (sequential: the
  // layer's first; parallel: its only one), each shard's made once per layer, fed every window.
  // AdaRound goes through the device's learner (here the CPU's behind the seam), once per linear.
  testing::ScopedTempDir dir;
  for (const Propagation propagation : {Propagation::kSequential, Propagation::kParallel}) {
    const bool sequential = propagation == Propagation::kSequential;
    auto device = std::make_shared<StandInDevice>();
    JobSpec spec = Small("aespa", dir.Child(absl::StrCat("aespa", static_cast<int>(propagation))));
    spec.calibration.propagation = propagation;
    auto report = RunBothWays(spec, device);
    ASSERT_TRUE(report.ok()) << report.status().ToString();
    EXPECT_EQ((*report)["device_roles"], Roles("cuda", "cpu", "cuda", "cuda"));
    const StandInLog& log = device->log;
    // The attention statistics live beside group 0's sums alone under sequential propagation,
    // beside all four under parallel, and neither lives while a GPTQ solve or AdaRound runs.
    EXPECT_TRUE(log.forward_statistics.attention);
    EXPECT_EQ(log.forward_statistics.all_groups, !sequential);
    const GroupSquares squares = GroupSquaresOf(log.forward_config);
    const int64_t hidden = log.forward_config.hidden_size;
    ASSERT_LT(hidden * hidden, squares.widest);
    EXPECT_EQ(log.peak_sum_elements, sequential ? squares.widest : squares.total);
    EXPECT_EQ(log.peak_sum_elements_beside_attention, sequential ? hidden * hidden : squares.total);
    EXPECT_EQ(log.live_attention, 0);
    EXPECT_EQ(log.solves_beside_statistics, 0);
    EXPECT_EQ(log.learners, 1);
    EXPECT_EQ(log.roundings, 2 * 7);  // 2 layers × 7 linears
    // Their GPTQ starting points (the unrounded values kept) on the device's solver.
    EXPECT_EQ(log.solvers, 1);
    EXPECT_EQ(log.solves, 2 * 7);
    EXPECT_EQ(log.solves_with_extras, 2 * 7);
    EXPECT_EQ(log.sums, 2 * 4 * 4);
    EXPECT_EQ(log.attention_stats, 2 * 4);     // 2 layers × 4 shards
    EXPECT_EQ(log.attention_windows, 2 * 6);  // each of the 6 windows once per layer
    EXPECT_EQ(log.runs, sequential ? kSequentialRuns : 2 * 4);
  }
}

TEST(DeviceJobTest, TheDevicePlanIsLoggedOnceAndReportedPerWorkerButNotOnTheCpu) {
  testing::ScopedTempDir dir;
  const DeviceMemoryPlan sliced{.free_bytes = 80'000'000'000, .layer_bytes = 69'300'000'000, .kv_heads = 96,
                                .value_heads = 48};
  std::vector<std::string> lines;
  std::vector<nlohmann::json> told;  // JobEvents::device_plan's, each before any layer was done
  bool layer_done = false;
  JobEvents events;
  events.log = [&](const std::string& line) { lines.push_back(line); };
  events.layer_done = [&](const LayerProgress&) { layer_done = true; };
  events.device_plan = [&](const nlohmann::json& plans) {
    EXPECT_FALSE(layer_done) << "the plan was told after a layer was done";
    told.push_back(plans);
  };
  const auto plan_lines = [&] {
    std::vector<std::string> found;
    for (const std::string& line : lines)
      if (line.find("device plan: ") != std::string::npos) found.push_back(line);
    lines.clear();
    layer_done = false;
    return found;
  };
  const auto take_told = [&] { return std::exchange(told, {}); };
  auto cpu = RunEmbeddedJob(Small("gptq", dir.Child("cpu")), events);
  ASSERT_TRUE(cpu.ok()) << cpu.status() << " (needs " << tiny_jobs::kModel << ")";
  EXPECT_FALSE(cpu->contains("device_plan"));
  EXPECT_TRUE(plan_lines().empty());
  EXPECT_TRUE(take_told().empty());

  auto device = std::make_shared<StandInDevice>();
  device->plan = sliced;
  LocalWorker worker(0, false, device);
  auto report = RunJob(Small("gptq", dir.Child("one")), {&worker}, events);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(plan_lines(), ::testing::ElementsAre(
                                "device plan: attention statistics in 2 passes of 48 of 96 key/value heads (the later "
                                "passes replay windows kept in host memory); a layer's bound 69.30 GB of 80.00 GB free; "
                                "hidden states on the device"));
  ASSERT_EQ((*report)["device_plan"].size(), 1u);
  const nlohmann::json& entry = (*report)["device_plan"][0];
  EXPECT_EQ(entry["worker"], 0);
  EXPECT_EQ(entry["shards_on_device"], 4);
  EXPECT_EQ(entry["shards_in_host"], 0);
  EXPECT_EQ(entry["attention_statistics"]["passes"], 2);
  EXPECT_EQ(entry["free_bytes"], sliced.free_bytes);
  EXPECT_EQ(take_told(), std::vector<nlohmann::json>{(*report)["device_plan"]});  // told once, at the start

  // Two workers: one line each, named; each holds its own 2 shards.
  auto first = std::make_shared<StandInDevice>(), second = std::make_shared<StandInDevice>();
  first->plan = second->plan = DeviceMemoryPlan{.free_bytes = 4'000'000'000, .layer_bytes = 2'000'000'000};
  LocalWorker a(0, true, first), b(0, true, second);
  report = RunJob(Small("gptq", dir.Child("two")), {&a, &b}, events);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(plan_lines(),
              ::testing::ElementsAre("worker 0 (cuda:0): device plan: a layer's bound 2.00 GB of 4.00 GB free; hidden "
                                   "states on the device",
                                   "worker 1 (cuda:0): device plan: a layer's bound 2.00 GB of 4.00 GB free; hidden "
                                   "states on the device"));
  ASSERT_EQ((*report)["device_plan"].size(), 2u);
  EXPECT_EQ((*report)["device_plan"][1]["worker"], 1);
  EXPECT_EQ((*report)["device_plan"][1]["shards_on_device"], 2);
  EXPECT_FALSE((*report)["device_plan"][1].contains("attention_statistics"));
  EXPECT_EQ(take_told(), std::vector<nlohmann::json>{(*report)["device_plan"]});
}

// Keeps finished layers in memory; with `crash` set, fails the job at layer 1's, as a
// coordinator's crash would, layer 0 kept.
class CrashingAtLayer1 : public FinishedLayersInMemory {
 public:
  bool crash = true;
  absl::Status Save(int layer, const std::vector<GroupSolution>& solutions) override {
    if (crash && layer == 1) return absl::AbortedError("crashed");
    return FinishedLayersInMemory::Save(layer, solutions);
  }
};

TEST(DeviceJobTest, AResumedJobOnRemoteWorkersReportsThePlanOfItsAdoptedShards) {
  // After a coordinator restart a job's workers start it empty, then adopt their shards and
  // replay the kept layer over them: the plan reported (told at the start and in the report) is
  // the one they run with, their shards held, not the empty one of their start.
  testing::ScopedTempDir dir;
  std::vector<std::shared_ptr<CudaDevice>> devices;
  for (int i = 0; i < 2; ++i) {
    auto device = std::make_shared<StandInDevice>();
    device->plan = DeviceMemoryPlan{.free_bytes = 4'000'000'000, .layer_bytes = 2'000'000'000};
    devices.push_back(std::move(device));
  }
  testing::Cluster cluster(2, devices);
  auto remote = cluster.pool().AwaitWorkers(2, std::chrono::seconds(20));
  ASSERT_TRUE(remote.ok()) << remote.status();
  std::vector<WorkerClient*> clients;
  for (auto& worker : *remote) clients.push_back(worker.get());
  CrashingAtLayer1 kept;
  JobEvents events;
  events.finished_layers = &kept;
  const auto first = RunJob(Small("gptq", dir.Child("first")), clients, events);
  ASSERT_EQ(first.status().code(), absl::StatusCode::kAborted) << first.status();

  kept.crash = false;
  std::vector<std::string> lines;
  nlohmann::json told;
  events.log = [&](const std::string& line) { lines.push_back(line); };
  events.device_plan = [&](const nlohmann::json& plans) { told = plans; };
  auto report = RunJob(Small("gptq", dir.Child("resumed")), clients, events);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(lines, ::testing::Contains(HasSubstr("resuming: layers 1-1")));
  ASSERT_EQ((*report)["device_plan"].size(), 2u);
  for (const nlohmann::json& plan : (*report)["device_plan"]) {
    EXPECT_EQ(plan["shards_on_device"], 2);
    EXPECT_EQ(plan["summary"], "device plan: a layer's bound 2.00 GB of 4.00 GB free; hidden states on the device");
  }
  EXPECT_EQ(told, (*report)["device_plan"]);
}

TEST(DeviceJobTest, AnAttentionStatisticsErrorFailsTheJobNamingItsLayerAndShard) {
  testing::ScopedTempDir dir;
  auto device = std::make_shared<StandInDevice>();
  device->log.fail_attention_at = 8;  // layer 1's second window: shard 1's first (shard 0 holds one)
  LocalWorker worker(0, false, device);
  JobSpec spec = Small("aespa", dir.Child("failed"));
  auto report = RunJob(spec, {&worker}, JobEvents());
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(report.status().message(),
              HasSubstr("layer 1 shard 1: stand-in device: no room for the attention statistics"));

  // Their download: the first shard's, at its end.
  auto downloads_fail = std::make_shared<StandInDevice>();
  downloads_fail->log.fail_attention_download = true;
  LocalWorker second(0, false, downloads_fail);
  spec.out_dir = dir.Child("failed_download");
  report = RunJob(spec, {&second}, JobEvents());
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(report.status().message(),
              HasSubstr("layer 0 shard 0: stand-in device: the attention statistics did not come back"));
  EXPECT_FALSE(std::filesystem::exists(dir.Child("failed_download") + "/model.safetensors"));
}

TEST(DeviceJobTest, AnAdaRoundErrorFailsTheJobNamingItsLayerAndLinear) {
  testing::ScopedTempDir dir;
  auto device = std::make_shared<StandInDevice>();
  device->log.fail_rounding_at = 9;  // the 9th linear: layer 1's second, k_proj
  LocalWorker worker(0, false, device);
  auto report = RunJob(Small("aespa", dir.Child("failed")), {&worker}, JobEvents());
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(report.status().message(),
              HasSubstr("layer 1 self_attn.k_proj: AdaRound: stand-in device: no room for AdaRound"));
  EXPECT_FALSE(std::filesystem::exists(dir.Child("failed") + "/model.safetensors"));

  // Without AdaRound iterations the plan rounds nowhere: the device makes no learner.
  auto without = std::make_shared<StandInDevice>();
  JobSpec spec = Small("aespa", dir.Child("without"));
  spec.method.aespa_adaround_iters = 0;
  auto plain = RunBothWays(spec, without);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ((*plain)["device_roles"], Roles("cuda", "cpu", nullptr, "cuda"));
  EXPECT_EQ(without->log.learners + without->log.roundings, 0);
  EXPECT_EQ(without->log.solves, 2 * 7);  // GPTQ's solves still on the device
}

TEST(DeviceJobTest, FlattenQuantCalibratesOnTheDeviceWithItsChannelMaximaAndSolvesOnTheCpuWithTheCpuBytes) {
  // Its channel split and activation scales come from the per-channel maxima the device sums
  // carry down with Σ x xᵀ.
  testing::ScopedTempDir dir;
  auto device = std::make_shared<StandInDevice>();
  JobSpec spec = Small("flattenquant", dir.Child("flattenquant"));
  spec.method.spec.group_size = -1;        // FlattenQuant's per-channel grids
  spec.method.flatten_threshold = "auto";  // split the channels above the threshold
  auto report = RunBothWays(spec, device);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ((*report)["device_roles"], Roles("cuda", "cpu"));
  EXPECT_EQ(device->log.solvers, 0);
  EXPECT_EQ(device->log.sums, 2 * 4 * 4);
  EXPECT_EQ(device->log.runs, kSequentialRuns);
  int64_t added = 0;
  for (const auto& module : (*report)["modules"]) added += module["added_inputs"].get<int64_t>();
  EXPECT_GT(added, 0);  // the maxima split channels: the bytes depend on them
}

TEST(DeviceJobTest, RtnAndFineQuantRunOnTheCpuWithoutTouchingTheDevice) {
  testing::ScopedTempDir dir;
  for (const char* method : {"rtn", "finequant"}) {
    auto device = std::make_shared<StandInDevice>();
    auto report = RunBothWays(Small(method, dir.Child(method)), device);
    ASSERT_TRUE(report.ok()) << method << ": " << report.status();
    EXPECT_EQ((*report)["device_roles"], Roles("none", "cpu")) << method;
    EXPECT_EQ((*report)["devices"], nlohmann::json::array({"cuda:0"})) << method;
    const StandInLog& log = device->log;
    EXPECT_EQ(log.forwards + log.sums + log.solvers + log.held + log.loads + log.updates + log.runs, 0) << method;
  }
}

TEST(DeviceJobTest, AModelTheDeviceCannotComputeIsRefusedBeforeAnyOutput) {
  testing::ScopedTempDir dir;
  // A model whose layers the device's forward pass cannot compute: refused as the job starts.
  // (Every registered method has a rule for the device; device_test fails when one is added without.)
  auto no_forward = std::make_shared<StandInDevice>();
  no_forward->forward_refusal = absl::UnimplementedError("the device forward pass cannot compute this model's layers");
  LocalWorker refusing(0, false, no_forward);
  auto report = RunJob(Small("gptq", dir.Child("layers")), {&refusing}, JobEvents());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(report.status().message(), HasSubstr("cannot compute this model's layers"));
  EXPECT_FALSE(std::filesystem::exists(dir.Child("layers")));
  EXPECT_EQ(no_forward->log.held, 0);
}

TEST(DeviceJobTest, ADeviceThatCannotOpenIsRefusedBeforeAnyOutput) {
  if (BuiltWithCuda() && OpenCudaDevice(0).ok()) GTEST_SKIP() << "this machine has a CUDA device";
  testing::ScopedTempDir dir;
  auto refused = RunEmbeddedJob(Small("gptq", dir.Child("gptq")), JobEvents(), Device{Device::Kind::kCuda, 0});
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(),
              HasSubstr(BuiltWithCuda() ? "no CUDA device" : "this build has no CUDA support"));
  EXPECT_FALSE(std::filesystem::exists(dir.Child("gptq")));
}

TEST(DeviceJobTest, OneJobNeverMixesDeviceKinds) {
  testing::ScopedTempDir dir;
  LocalWorker cpu, cuda(0, true, std::make_shared<StandInDevice>());
  auto refused = RunJob(Small("gptq", dir.Child("mixed")), {&cpu, &cuda}, JobEvents());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("different device kinds"));
  EXPECT_THAT(refused.status().message(), HasSubstr("\"cpu\",\"cuda:0\""));
}

}  // namespace
}  // namespace qshard
