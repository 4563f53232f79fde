// How `--device cuda` finds and loads the CUDA plugin (worker/device/cuda_plugin.h): a missing
// or broken plugin is a clear error that names it; in a CUDA build the plugin beside the program
// loads, reports this machine's lack of a device (or opens it), and leaves threads with small
// stacks startable, since the CUDA libraries' thread-local storage came with it, not at start.
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/scoped_temp_dir.h"
#include "worker/device/cuda_device.h"
#include "worker/device/cuda_plugin.h"

namespace qshard {
namespace {

using ::testing::HasSubstr;

// Sets $QSHARD_CUDA_PLUGIN (or unsets it, for nullopt) for one test.
class ScopedPluginPath {
 public:
  explicit ScopedPluginPath(const std::optional<std::string>& path) {
    if (const char* old = std::getenv(kCudaPluginEnv)) old_ = old;
    if (path) setenv(kCudaPluginEnv, path->c_str(), 1);
    else unsetenv(kCudaPluginEnv);
  }
  ~ScopedPluginPath() {
    if (old_) setenv(kCudaPluginEnv, old_->c_str(), 1);
    else unsetenv(kCudaPluginEnv);
  }

 private:
  std::optional<std::string> old_;
};

absl::Status OpenCuda(int index) { return OpenDevice(Device{Device::Kind::kCuda, index}).status(); }

TEST(CudaPluginTest, AMissingPluginSaysTheBuildLacksCuda) {
  const std::string path = "/nonexistent/libqshard_cuda_plugin.so";
  ScopedPluginPath scoped(path);
  const absl::Status opened = OpenCuda(1);
  if (!BuiltWithCuda()) {
    EXPECT_EQ(opened.code(), absl::StatusCode::kUnimplemented);
    EXPECT_THAT(opened.message(), HasSubstr("--device cuda:1: this build has no CUDA support"));
    return;
  }
  EXPECT_EQ(opened.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(opened.message(), HasSubstr("--device cuda:1: no CUDA plugin at " + path +
                                          ": this build or installation of qshard lacks CUDA support"));
  // A relative path is the working directory's file, named in full.
  ScopedPluginPath relative("no-such-dir/libqshard_cuda_plugin.so");
  EXPECT_THAT(OpenCuda(0).message(),
              HasSubstr(absl::StrCat("no CUDA plugin at ", std::filesystem::current_path().string(),
                                     "/no-such-dir/libqshard_cuda_plugin.so: ")));
}

TEST(CudaPluginTest, AFileTheLoaderRefusesIsReportedInTheLoadersWords) {
  if (!BuiltWithCuda()) GTEST_SKIP() << "a build without CUDA loads no plugin";
  testing::ScopedTempDir dir;
  const std::string path = dir.Child("libqshard_cuda_plugin.so");
  std::ofstream(path) << "not a shared library\n";
  ScopedPluginPath scoped(path);
  const absl::Status opened = OpenCuda(0);
  EXPECT_EQ(opened.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(opened.message(), HasSubstr("--device cuda:0: cannot load the CUDA plugin " + path + ": "));
  EXPECT_THAT(opened.message(), HasSubstr("file too short"));  // dlerror's words
}

TEST(CudaPluginTest, ALibraryWithoutTheEntryPointIsNotAPlugin) {
  if (!BuiltWithCuda()) GTEST_SKIP() << "a build without CUDA loads no plugin";
  Dl_info libc;  // a library that loads anywhere and exports no qshard_cuda_plugin_v1
  ASSERT_NE(dladdr(reinterpret_cast<void*>(&::dl_iterate_phdr), &libc), 0);
  ScopedPluginPath scoped(libc.dli_fname);
  const absl::Status opened = OpenCuda(0);
  EXPECT_EQ(opened.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(opened.message(), HasSubstr(std::string(libc.dli_fname) + " is not a qshard CUDA plugin"));
  EXPECT_THAT(opened.message(), HasSubstr(kCudaPluginEntry));
}

TEST(CudaPluginTest, APluginFromAnotherBuildIsRefused) {
#ifdef QSHARD_STALE_CUDA_PLUGIN
  ScopedPluginPath scoped(QSHARD_STALE_CUDA_PLUGIN);
  const absl::Status opened = OpenCuda(0);
  EXPECT_EQ(opened.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(opened.message(), HasSubstr(absl::StrCat("the CUDA plugin ", QSHARD_STALE_CUDA_PLUGIN, " has ABI ",
                                                       kCudaPluginAbi + 1)));
  EXPECT_THAT(opened.message(), HasSubstr(absl::StrCat("this program needs ABI ", kCudaPluginAbi)));
#else
  GTEST_SKIP() << "a build without CUDA loads no plugin";
#endif
}

bool CudaRuntimeLoaded() {
  return dl_iterate_phdr([](dl_phdr_info* info, size_t, void*) {
           return std::string(info->dlpi_name).find("libcudart.so") != std::string::npos ? 1 : 0;
         }, nullptr) != 0;
}

TEST(CudaPluginTest, ThePluginBesideTheProgramLoadsAndSmallThreadStacksStillWork) {
  if (!BuiltWithCuda()) GTEST_SKIP() << "a build without CUDA loads no plugin";
  ScopedPluginPath scoped(std::nullopt);
  auto opened = OpenCudaDevice(0);
#if !defined(QSHARD_CUDA_EMULATED)  // the host emulation of CUDA (QSHARD_CUDA=EMULATED) has no libcudart
  EXPECT_TRUE(CudaRuntimeLoaded());  // the plugin and its CUDA libraries loaded, not a loader error
#endif
  if (opened.ok()) {
    EXPECT_THAT((*opened)->Describe(), HasSubstr("cuda:0 ("));
  } else {
    EXPECT_EQ(opened.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(opened.status().message(), HasSubstr("--device cuda:0: no CUDA device"));
  }
  // --device-memory crosses the plugin's entry point (kCudaPluginAbi 8) into the session.
  if (auto budgeted = OpenCudaDevice(0, 65000000); budgeted.ok())
    EXPECT_THAT((*budgeted)->Describe(), HasSubstr(", at most 65000000 bytes of it for this process (--device-memory)"));
  // civetweb (the Prometheus exposer's HTTP server) asks for 100 KB stacks; glibc refused such
  // threads (EINVAL) when the program linked cuBLASLt and its 94 KB of static TLS.
  pthread_attr_t attr;
  ASSERT_EQ(pthread_attr_init(&attr), 0);
  ASSERT_EQ(pthread_attr_setstacksize(&attr, 100 * 1024), 0);
  pthread_t thread;
  const int created = pthread_create(&thread, &attr, [](void*) -> void* { return nullptr; }, nullptr);
  EXPECT_EQ(created, 0);
  if (created == 0) pthread_join(thread, nullptr);
  pthread_attr_destroy(&attr);
}

}  // namespace
}  // namespace qshard
