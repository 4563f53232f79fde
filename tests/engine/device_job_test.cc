// The worker's device seam end to end on the CPU: a stand-in CudaDevice whose sums and solver
// are the CPU's own gives a job the bytes of the CPU path (so windows, tokens, shards and
// solves travel the device route intact), device errors fail the job with their context, a
// job the device cannot run or a device that cannot open is refused before any output, and a
// job never mixes device kinds.
#include <filesystem>

#include "engine/job_runner.h"
#include "engine/local_worker.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/scoped_temp_dir.h"
#include "tests/engine/tiny_jobs.h"
#include "worker/device/cuda_device.h"

namespace qshard {
namespace {

using ::testing::HasSubstr;
using testing::ReadFileBytes;

// A sum kept on the host as the CPU collector would keep it, counting its calls; fails the
// `fail_at`-th AddWindows call of its device (0: never).
class HostSum : public OffHostHessianSum {
 public:
  HostSum(int64_t dim, int* calls, int fail_at) : sum_(dim), calls_(calls), fail_at_(fail_at) {}
  int64_t dim() const override { return sum_.dim; }
  absl::Status AddWindows(const float* x, int64_t rows, int64_t window) override {
    if (++*calls_ == fail_at_) return absl::ResourceExhaustedError("stand-in device: out of memory");
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
  int* calls_;
  int fail_at_;
};

class StandInDevice : public CudaDevice {
 public:
  explicit StandInDevice(int fail_at = 0) : fail_at_(fail_at) {}
  const Device& device() const override { return device_; }
  std::string Describe() const override { return "cuda:0 (stand-in)"; }
  absl::StatusOr<std::unique_ptr<OffHostHessianSum>> NewHessianSum(int64_t dim) override {
    ++sums;
    return std::make_unique<HostSum>(dim, &windows_calls, fail_at_);
  }
  absl::StatusOr<std::unique_ptr<Solver>> MakeGptqSolver(const QuantSpec& spec) override {
    ++solvers;
    return MakeSolver("gptq", spec);
  }

  int sums = 0, solvers = 0, windows_calls = 0;

 private:
  Device device_{Device::Kind::kCuda, 0};
  int fail_at_;
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
    EXPECT_EQ(device->solvers, 1);
    // 2 layers × 4 groups × 4 shards, each shard's sum made on the device, its windows
    // arriving in batches of 2.
    EXPECT_EQ(device->sums, 2 * 4 * 4);
    EXPECT_GT(device->windows_calls, 0);
    const std::string bytes = ReadFileBytes(cpu_dir + "/model.safetensors");
    ASSERT_FALSE(bytes.empty());
    EXPECT_TRUE(bytes == ReadFileBytes(device_dir + "/model.safetensors"));
  }
}

TEST(DeviceJobTest, ADeviceErrorFailsTheJobNamingItsLayerAndShard) {
  testing::ScopedTempDir dir;
  auto device = std::make_shared<StandInDevice>(/*fail_at=*/5);
  LocalWorker worker(0, false, device);
  auto report = RunJob(Small("gptq", dir.Child("failed")), {&worker}, JobEvents());
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(report.status().message(), HasSubstr("stand-in device: out of memory"));
  EXPECT_THAT(report.status().message(), HasSubstr("layer 0 shard "));
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
  EXPECT_EQ(device->solvers, 0);
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
