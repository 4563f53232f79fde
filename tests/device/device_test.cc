// --device's parsing, the check of what a job may ask of a device, and opening one: in a build
// without CUDA "this build has no CUDA support", in a CUDA build on a machine without a GPU
// "no CUDA device" with the CUDA error (both what CI sees on a clean clone).
#include "worker/device/device.h"

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/device/cuda_device.h"
#include "worker/device/device_support.h"
#include "worker/methods/method_registry.h"

namespace qshard {
namespace {

using ::testing::HasSubstr;

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

TEST(DeviceTest, CpuRunsEveryMethodAndOption) {
  for (const MethodRegistration& method : RegisteredMethods()) {
    MethodOptions options;
    options.method = std::string(method.name);
    options.spec.mse_clip = true;
    EXPECT_TRUE(CheckRunsOnDevice(options, Device{}).ok()) << method.name;
  }
}

TEST(DeviceTest, CudaRunsGptqWithWhatItsSolverImplements) {
  const Device cuda{Device::Kind::kCuda, 1};
  MethodOptions options;  // gptq
  EXPECT_TRUE(CheckRunsOnDevice(options, cuda).ok());
  options.spec.group_size = 32;
  options.spec.act_order = true;
  options.spec.sym = true;
  options.spec.bits = 3;
  options.spec.block_size = 64;
  EXPECT_TRUE(CheckRunsOnDevice(options, cuda).ok());
  options.spec.act_order = false;
  options.spec.static_groups = true;
  EXPECT_TRUE(CheckRunsOnDevice(options, cuda).ok());

  options.spec.mse_clip = true;
  const absl::Status mse = CheckRunsOnDevice(options, cuda);
  EXPECT_EQ(mse.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(mse.message(), HasSubstr("--device cuda:1"));
  EXPECT_THAT(mse.message(), HasSubstr("--mse"));
  EXPECT_EQ(CheckGptqSpecRunsOnDevice(options.spec, cuda).code(), absl::StatusCode::kUnimplemented);
  EXPECT_TRUE(CheckGptqSpecRunsOnDevice(options.spec, Device{}).ok());
}

TEST(DeviceTest, CudaRefusesEveryOtherMethodByName) {
  int refused = 0;
  for (const MethodRegistration& method : RegisteredMethods()) {
    if (method.name == "gptq") continue;
    MethodOptions options;
    options.method = std::string(method.name);
    const absl::Status status = CheckRunsOnDevice(options, Device{Device::Kind::kCuda, 0});
    EXPECT_EQ(status.code(), absl::StatusCode::kUnimplemented) << method.name;
    EXPECT_THAT(status.message(), HasSubstr(absl::StrCat("method ", std::string(method.name), " "))) << method.name;
    ++refused;
  }
  EXPECT_GE(refused, 5);  // rtn, zfold, aespa, finequant, flattenquant
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
