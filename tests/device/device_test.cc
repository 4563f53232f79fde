// --device's parsing, the plan of what a job runs on a device, and opening one: in a build
// without CUDA "this build has no CUDA support", in a CUDA build on a machine without a GPU
// "no CUDA device" with the CUDA error (both what CI sees on a clean clone).
#include "worker/device/device.h"

#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/device/cuda_device.h"
#include "worker/device/device_support.h"
#include "worker/methods/method_registry.h"

namespace qshard {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(DeviceTest, ParsesCpuCudaAndOrdinals) {
  struct Case {
    const char* text;
    Device device;
  };
  for (const Case& c : {Case{"cpu", Device{}}, Case{"cuda", {Device::Kind::kCuda, 0}},
                        Case{"cuda:0", {Device::Kind::kCuda, 0}}, Case{"cuda:3", {Device::Kind::kCuda, 3}},
                        Case{"cuda:017", {Device::Kind::kCuda, 17}},
                        Case{"cuda:2147483647", {Device::Kind::kCuda, 2147483647}}}) {
    auto device = ParseDevice(c.text);
    ASSERT_TRUE(device.ok()) << c.text << ": " << device.status();
    EXPECT_EQ(*device, c.device) << c.text;
  }
  EXPECT_EQ(DeviceName(Device{}), "cpu");
  EXPECT_EQ(DeviceName(Device{Device::Kind::kCuda, 0}), "cuda:0");
  EXPECT_EQ(DeviceName(*ParseDevice("cuda:12")), "cuda:12");
}

TEST(DeviceTest, RefusesAnythingElseNamingTheFlagAndTheValue) {
  for (const char* text : {"tpu", "cuda:x", "cuda:-1", "cuda:", "cuda:+1", "cuda: 1", "cuda:1 ", "CUDA", "cuda:1x",
                           "cuda:0x1", "cuda:2147483648", "cuda:99999999999999999999", "", "cpu:0", "cuda0", "gpu"}) {
    auto device = ParseDevice(text, "--device");
    ASSERT_FALSE(device.ok()) << "'" << text << "' was accepted";
    EXPECT_EQ(device.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(device.status().message(), HasSubstr(absl::StrCat("--device: '", text, "'"))) << text;
    EXPECT_THAT(device.status().message(), HasSubstr("cuda:N")) << text;
  }
}

using Place = DevicePlan::Place;

TEST(DeviceTest, DeviceMemoryGoesToTheCudaDevicesAndIsRefusedWithoutOne) {
  Device cpu, cuda{Device::Kind::kCuda, 1};
  ASSERT_TRUE(ApplyDeviceMemory(0, {&cpu}).ok());  // 0: no cap, on any device
  ASSERT_TRUE(ApplyDeviceMemory(65000000, {&cpu, &cuda}).ok());  // quantize --device cpu --validate-device cuda:1
  EXPECT_EQ(cuda.memory_bytes, 65000000u);
  EXPECT_EQ(cpu.memory_bytes, 0u);
  EXPECT_EQ(DeviceName(cuda), "cuda:1");  // what a worker's hello carries: no budget

  // --device cpu; the coordinator's --validate-on worker, which opens no device.
  for (const absl::Status& refused : {ApplyDeviceMemory(1000, {&cpu}), ApplyDeviceMemory(1000, {})}) {
    EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(refused.message(), AllOf(HasSubstr("--device-memory 1000: "), HasSubstr("--device cuda"),
                                         HasSubstr("the CPU has no device memory")));
  }
  EXPECT_EQ(cpu.memory_bytes, 0u);
}

TEST(DeviceTest, CpuRunsEveryMethodAndOptionThere) {
  for (const MethodRegistration& method : RegisteredMethods()) {
    MethodOptions options;
    options.method = std::string(method.name);
    options.spec.mse_clip = true;
    auto plan = PlanOnDevice(options, Device{});
    ASSERT_TRUE(plan.ok()) << method.name << ": " << plan.status();
    EXPECT_EQ(plan->calibration, method.needs.input_stats ? Place::kCpu : Place::kNone) << method.name;
    EXPECT_EQ(plan->solves, Place::kCpu) << method.name;
    EXPECT_EQ(plan->cpu_because, "") << method.name;
    EXPECT_EQ(PlaceName(plan->solves, Device{}), "cpu");
  }
}

TEST(DeviceTest, CudaRunsGptqWholeWithOrWithoutMse) {
  const Device cuda{Device::Kind::kCuda, 1};
  MethodOptions options;  // gptq
  options.spec.group_size = 32;
  options.spec.act_order = true;
  options.spec.sym = true;
  options.spec.bits = 3;
  options.spec.block_size = 64;
  for (const bool mse : {false, true}) {
    for (const bool static_groups : {false, true}) {
      options.spec.mse_clip = mse;
      options.spec.static_groups = static_groups;
      auto plan = PlanOnDevice(options, cuda);
      ASSERT_TRUE(plan.ok()) << plan.status();
      EXPECT_EQ(plan->calibration, Place::kDevice);
      EXPECT_EQ(plan->solves, Place::kDevice) << mse;
      EXPECT_EQ(PlaceName(plan->solves, cuda), "cuda");
      EXPECT_EQ(plan->cpu_because, "");
      EXPECT_EQ(DescribePlan(*plan), "calibration (forward passes, statistics) on the device, solves on the device");
    }
  }
}

TEST(DeviceTest, CudaHasAPlanOrAReasonForEveryRegisteredMethod) {
  struct Expected {
    Place calibration, solves;
    const char* because;  // in cpu_because, or in the refusal
    Place rounding = Place::kNone;
    Place gptq_solves = Place::kNone;
  };
  const std::map<std::string, Expected> accepted = {
      {"zfold", {Place::kDevice, Place::kCpu, "ζ search and its folds", Place::kNone, Place::kDevice}},
      {"rtn", {Place::kNone, Place::kCpu, "no calibration"}},
      {"finequant", {Place::kNone, Place::kCpu, "no calibration"}},
      {"aespa", {Place::kDevice, Place::kCpu, "ζ search", Place::kDevice, Place::kDevice}},
      {"flattenquant", {Place::kDevice, Place::kCpu, "channel split"}},
  };
  const Device cuda{Device::Kind::kCuda, 0};
  int planned = 0;
  for (const MethodRegistration& method : RegisteredMethods()) {
    const std::string name(method.name);
    if (name == "gptq") continue;
    MethodOptions options;
    options.method = name;
    auto plan = PlanOnDevice(options, cuda);
    if (auto it = accepted.find(name); it != accepted.end()) {
      ASSERT_TRUE(plan.ok()) << name << ": " << plan.status();
      EXPECT_EQ(plan->calibration, it->second.calibration) << name;
      EXPECT_EQ(plan->solves, it->second.solves) << name;
      EXPECT_EQ(plan->rounding, it->second.rounding) << name;
      EXPECT_EQ(plan->gptq_solves, it->second.gptq_solves) << name;
      EXPECT_THAT(plan->cpu_because, HasSubstr(it->second.because)) << name;
      EXPECT_THAT(DescribePlan(*plan), HasSubstr("solves on the CPU (")) << name;
    } else {
      // A method added to the registry without a rule is refused, naming itself and what to use.
      ASSERT_FALSE(plan.ok()) << name;
      EXPECT_EQ(plan.status().code(), absl::StatusCode::kUnimplemented) << name;
      EXPECT_THAT(plan.status().message(),
                  HasSubstr(absl::StrCat("--device cuda:0: method ", name, " has no plan for a CUDA device")))
          << name;
      EXPECT_THAT(plan.status().message(), HasSubstr("use --device cpu")) << name;
      ADD_FAILURE() << name << " has no rule in worker/device/device_support.cc";
    }
    ++planned;
  }
  EXPECT_GE(planned, 5);  // rtn, zfold, aespa, finequant, flattenquant
  MethodOptions rtn;
  rtn.method = "rtn";
  EXPECT_EQ(DescribePlan(*PlanOnDevice(rtn, cuda)),
            "no calibration, solves on the CPU (RTN needs no calibration: nothing for the device to do)");
}

TEST(DeviceTest, AespaSolvesGptqAndRoundsOnTheDeviceAndSaysSo) {
  // A CUDA worker splits aespa's solve: its GPTQ starting points and AdaRound on the device,
  // the ζ search on the CPU; on the CPU and without AdaRound iterations there is no AdaRound to
  // split.
  MethodOptions aespa;
  aespa.method = "aespa";
  const Device cuda{Device::Kind::kCuda, 0};
  auto plan = PlanOnDevice(aespa, cuda);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->rounding, Place::kDevice);
  EXPECT_EQ(PlaceName(plan->rounding, cuda), "cuda");
  EXPECT_EQ(plan->gptq_solves, Place::kDevice);
  EXPECT_EQ(DescribePlan(*plan),
            "calibration (forward passes, statistics) on the device, solves on the CPU (aespa's ζ search has no "
            "device code) but GPTQ's and AdaRound on the device");
  auto on_cpu = PlanOnDevice(aespa, Device{});
  ASSERT_TRUE(on_cpu.ok());
  EXPECT_EQ(on_cpu->rounding, Place::kCpu);
  EXPECT_EQ(PlaceName(on_cpu->rounding, Device{}), "cpu");
  aespa.aespa_adaround_iters = 0;
  auto without = PlanOnDevice(aespa, cuda);
  ASSERT_TRUE(without.ok());
  EXPECT_EQ(without->rounding, Place::kNone);
  EXPECT_THAT(DescribePlan(*without), Not(HasSubstr("AdaRound")));
  EXPECT_THAT(DescribePlan(*without), HasSubstr("but GPTQ's on the device"));
  MethodOptions gptq;
  EXPECT_EQ(PlanOnDevice(gptq, cuda)->rounding, Place::kNone);
  EXPECT_EQ(PlanOnDevice(gptq, cuda)->gptq_solves, Place::kNone);  // its solves are `solves`
}

TEST(DeviceTest, ZfoldAndAespaSolveTheirGptqOnTheDeviceUnderMseToo) {
  const Device cuda{Device::Kind::kCuda, 0};
  for (const char* method : {"zfold", "aespa"}) {
    MethodOptions options;
    options.method = method;
    options.spec.mse_clip = true;
    auto plan = PlanOnDevice(options, cuda);
    ASSERT_TRUE(plan.ok()) << plan.status();
    EXPECT_EQ(plan->solves, Place::kCpu) << method;
    EXPECT_EQ(plan->gptq_solves, Place::kDevice) << method;
    EXPECT_THAT(plan->cpu_because, Not(HasSubstr("--mse"))) << method;
    EXPECT_THAT(DescribePlan(*plan), HasSubstr("GPTQ's")) << method;
  }
  MethodOptions zfold;
  zfold.method = "zfold";
  EXPECT_EQ(DescribePlan(*PlanOnDevice(zfold, cuda)),
            "calibration (forward passes, statistics) on the device, solves on the CPU (Z-Fold's ζ search and its "
            "folds have no device code) but GPTQ's on the device");
  EXPECT_EQ(PlanOnDevice(zfold, Device{})->gptq_solves, Place::kNone);
}

TEST(DeviceTest, AValidationOnTheDeviceNeedsCheckpointsItsKernelsRead) {
  const Device cuda{Device::Kind::kCuda, 1};
  MethodOptions method;
  for (const int bits : {2, 3, 4, 8}) {
    method.spec.bits = bits;
    EXPECT_TRUE(CheckValidationRunsOnDevice(method, Device{}).ok()) << bits;  // the CPU reads every width
    const absl::Status on_device = CheckValidationRunsOnDevice(method, cuda);
    if (bits == 4 || bits == 8) {
      EXPECT_TRUE(on_device.ok()) << bits << ": " << on_device;
    } else {
      EXPECT_EQ(on_device.code(), absl::StatusCode::kFailedPrecondition) << bits;
      EXPECT_THAT(std::string(on_device.message()),
                  AllOf(HasSubstr("--validate-device cuda:1"), HasSubstr(absl::StrCat(bits, "-bit")),
                        HasSubstr("--validate-device cpu")));
      // On a worker the way out is the coordinator: --validate-device cpu would ask for CPU workers.
      const absl::Status on_worker = CheckValidationRunsOnDevice(method, cuda, ValidationAt::kWorker);
      EXPECT_EQ(on_worker.code(), absl::StatusCode::kFailedPrecondition) << bits;
      EXPECT_THAT(std::string(on_worker.message()),
                  AllOf(HasSubstr("--validate-on worker: the workers' device cuda:1"),
                        HasSubstr("--validate-on coordinator"), Not(HasSubstr("--validate-device"))));
    }
  }
  method.method = "flattenquant";
  method.spec.bits = 8;
  EXPECT_THAT(std::string(CheckValidationRunsOnDevice(method, cuda).message()), HasSubstr("FlattenQuant"));
  EXPECT_THAT(std::string(CheckValidationRunsOnDevice(method, cuda, ValidationAt::kWorker).message()),
              AllOf(HasSubstr("FlattenQuant"), HasSubstr("--validate-on coordinator")));
  EXPECT_TRUE(CheckValidationRunsOnDevice(method, Device{}).ok());
}

TEST(DeviceTest, OpeningTheCpuOpensNothing) {
  auto opened = OpenDevice(Device{});
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(*opened, nullptr);
}

TEST(DeviceTest, CudaWithoutSupportOrWithoutADeviceIsAClearError) {
  auto opened = OpenDevice(Device{Device::Kind::kCuda, 0});
  if (!BuiltWithCuda()) {
    ASSERT_FALSE(opened.ok());
    EXPECT_EQ(opened.status().code(), absl::StatusCode::kUnimplemented);
    EXPECT_THAT(opened.status().message(), HasSubstr("--device cuda:0: this build has no CUDA support"));
    return;
  }
  if (opened.ok()) GTEST_SKIP() << "this machine has a CUDA device: " << (*opened)->Describe();
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(opened.status().message(), HasSubstr("--device cuda:0: no CUDA device"));
  EXPECT_THAT(opened.status().message(), HasSubstr("cudaError"));  // the CUDA error's name
}

TEST(DeviceTest, AnOrdinalBeyondTheMachinesDevicesIsRefused) {
  auto opened = OpenDevice(Device{Device::Kind::kCuda, 4096});
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(),
            BuiltWithCuda() ? absl::StatusCode::kFailedPrecondition : absl::StatusCode::kUnimplemented);
  EXPECT_THAT(opened.status().message(), HasSubstr("--device cuda:4096: "));
}

}  // namespace
}  // namespace qshard
