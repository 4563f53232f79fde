// The worker's device seam end to end on the CPU: a stand-in CudaDevice whose forward pass, sums
// and solver are the CPU's own gives a job the bytes of the CPU path (so windows, tokens, shards,
// the true-sequential passes, the weights swapped in and the solves travel the device route
// intact), device errors fail the job with their context, a job the device cannot run or a
// device that cannot open is refused before any output, and a job never mixes device kinds.
#include <filesystem>
#include <map>

#include "engine/job_runner.h"
#include "engine/local_worker.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "core/status.h"
#include "tests/core/scoped_temp_dir.h"
#include "tests/engine/forwarding_worker.h"
#include "tests/engine/tiny_jobs.h"
#include "worker/device/cuda_device.h"

namespace qshard {
namespace {

using ::testing::HasSubstr;
using testing::ReadFileBytes;

// What the stand-in device did, and the call at which it fails (0: never).
struct StandInLog {
  int sums = 0, solvers = 0, windows_calls = 0, runs = 0, held = 0, reads = 0, loads = 0, updates = 0;
  int fail_windows_at = 0, fail_run_at = 0;
};

// A sum kept on the host as the CPU collector would keep it; its "device memory" is the host's.
class HostSum : public OffHostHessianSum {
 public:
  HostSum(int64_t dim, StandInLog* log) : sum_(dim), log_(log) {}
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

// The device forward pass computed with the CPU's stages (decoder_layers.h), one window at a time
// as the CUDA one runs, each group input handed to its sum where it was computed.
class CpuForward : public ForwardDevice {
 public:
  CpuForward(const DecoderModel& model, int64_t seqlen, StandInLog* log) : model_(model), seqlen_(seqlen), log_(log) {}

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
  absl::Status Run(int shard, const ForwardPass& pass, const std::array<OffHostHessianSum*, 4>& sums) override {
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
        if (AddsOutput(pass, g))
          model_.AddGroupOutput(layer_, weights_, g, inputs[g], residual, 1, seqlen_);
      }
      std::copy(residual.data(), residual.data() + residual.size(), rows);
    }
    return absl::OkStatus();
  }

 private:
  const DecoderModel& model_;
  int64_t seqlen_;
  StandInLog* log_;
  std::map<int, Tensor> shards_;
  int layer_ = -1;
  DecoderLayerWeights weights_;
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
    return MakeSolver("gptq", spec);
  }
  absl::StatusOr<std::unique_ptr<ForwardDevice>> NewForward(const DecoderModel& model, int64_t seqlen) override {
    if (!forward_refusal.ok()) return forward_refusal;
    return std::make_unique<CpuForward>(model, seqlen, &log);
  }

  StandInLog log;
  absl::Status forward_refusal;  // what NewForward answers instead of a forward pass

 private:
  Device device_{Device::Kind::kCuda, 0};
};

JobSpec Small(const std::string& method, const std::string& out) {
  JobSpec spec = tiny_jobs::Job(method, 4, out, /*nsamples=*/6, /*seqlen=*/64);
  spec.method.spec.group_size = 32;
  spec.execution.batch_windows = 2;
  return spec;
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

    auto device = std::make_shared<StandInDevice>();
    LocalWorker worker(0, false, device);
    auto report = RunJob(on_device, {&worker}, JobEvents());
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_EQ((*report)["devices"], nlohmann::json::array({"cuda:0"}));
    const StandInLog& log = device->log;
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
    EXPECT_EQ(log.runs, 4 * (sequential ? 5 + 4 : 2));
    const std::string bytes = ReadFileBytes(cpu_dir + "/model.safetensors");
    ASSERT_FALSE(bytes.empty());
    EXPECT_TRUE(bytes == ReadFileBytes(device_dir + "/model.safetensors"));
  }
}

TEST(DeviceJobTest, RestartableDeviceWorkersGiveTheCpuBytes) {
  // Two workers that can restart a layer: each reads its shards' layer inputs back from the
  // device as a layer begins.
  testing::ScopedTempDir dir;
  auto cpu_report = RunEmbeddedJob(Small("gptq", dir.Child("cpu")), JobEvents());
  ASSERT_TRUE(cpu_report.ok()) << cpu_report.status() << " (needs " << tiny_jobs::kModel << ")";
  auto first = std::make_shared<StandInDevice>(), second = std::make_shared<StandInDevice>();
  LocalWorker a(0, true, first), b(0, true, second);
  auto report = RunJob(Small("gptq", dir.Child("device")), {&a, &b}, JobEvents());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(first->log.reads, 2 * 2);  // 2 layers × its 2 shards
  EXPECT_EQ(second->log.reads, 2 * 2);
  EXPECT_TRUE(ReadFileBytes(dir.Child("cpu") + "/model.safetensors") ==
              ReadFileBytes(dir.Child("device") + "/model.safetensors"));
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
  // shards' layer inputs (read back from the device as the layer began).
  testing::ScopedTempDir dir;
  auto cpu_report = RunEmbeddedJob(Small("gptq", dir.Child("cpu")), JobEvents());
  ASSERT_TRUE(cpu_report.ok()) << cpu_report.status() << " (needs " << tiny_jobs::kModel << ")";
  auto survivor_device = std::make_shared<StandInDevice>(), lost_device = std::make_shared<StandInDevice>();
  LocalWorker survivor(0, true, survivor_device), lost(0, true, lost_device);
  DyingWorker dying(lost, /*dies_at=*/5);
  auto report = RunJob(Small("gptq", dir.Child("device")), {&survivor, &dying}, JobEvents());
  ASSERT_TRUE(report.ok()) << report.status();
  const StandInLog& log = survivor_device->log;
  EXPECT_EQ(log.held, 2 + 2 + 4);  // its own shards, the adopted ones, all four again at the restart
  EXPECT_EQ(log.loads, 2 + 1 + 1 + 1);  // layers 0 and 1, the replayed layer 0 and back to 1, layer 1 again
  EXPECT_TRUE(ReadFileBytes(dir.Child("cpu") + "/model.safetensors") ==
              ReadFileBytes(dir.Child("device") + "/model.safetensors"));
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

TEST(DeviceJobTest, AJobTheDeviceCannotRunIsRefusedBeforeAnyOutput) {
  testing::ScopedTempDir dir;
  const Device cuda{Device::Kind::kCuda, 0};
  for (const char* method : {"zfold", "aespa", "rtn"}) {
    auto refused = RunEmbeddedJob(Small(method, dir.Child(method)), JobEvents(), cuda);
    ASSERT_FALSE(refused.ok()) << method;
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnimplemented) << method;
    EXPECT_THAT(refused.status().message(), HasSubstr(absl::StrCat("method ", method))) << method;
    EXPECT_FALSE(std::filesystem::exists(dir.Child(method))) << method;
  }
  JobSpec mse = Small("gptq", dir.Child("mse"));
  mse.method.spec.mse_clip = true;
  auto refused = RunEmbeddedJob(mse, JobEvents(), cuda);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(refused.status().message(), HasSubstr("--mse"));

  // A worker handed such a job refuses it at StartJob, before opening the model.
  auto device = std::make_shared<StandInDevice>();
  LocalWorker worker(0, false, device);
  const absl::Status started = worker.StartJob(Small("zfold", dir.Child("w")), 64, {0});
  EXPECT_EQ(started.code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(device->log.solvers, 0);

  // A model whose layers the device's forward pass cannot compute: refused as the job starts.
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
