// OpenCudaDevice in a build with CUDA: the device code and the CUDA libraries live in the CUDA
// plugin (worker/device/cuda_plugin.h), loaded with dlopen when a CUDA device is opened, so the
// program itself links no CUDA library and starts on machines without them.
#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "worker/device/cuda_plugin.h"

namespace qshard {
namespace {

// $QSHARD_CUDA_PLUGIN, else the plugin's file next to the running program.
absl::StatusOr<std::string> PluginPath() {
  std::error_code error;
  if (const char* path = std::getenv(kCudaPluginEnv); path != nullptr && *path != '\0') {
    // Absolute, so that dlopen takes it as a file rather than a name to search the library path for.
    const std::filesystem::path absolute = std::filesystem::absolute(path, error);
    return error ? std::string(path) : absolute.string();
  }
  const std::filesystem::path program = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error)
    return absl::FailedPreconditionError(absl::StrCat("cannot find the CUDA plugin: /proc/self/exe: ", error.message(),
                                                      " (set ", kCudaPluginEnv, " to its path)"));
  return (program.parent_path() / QSHARD_CUDA_PLUGIN_FILE).string();
}

// Loads the plugin (each call: dlopen of a loaded library only counts a reference, and a changed
// $QSHARD_CUDA_PLUGIN is honoured). It is never unloaded: its code backs the devices it opens,
// and the CUDA libraries register exit handlers of their own.
absl::StatusOr<const CudaPluginV1*> LoadPlugin() {
  absl::StatusOr<std::string> path = PluginPath();
  if (!path.ok()) return path.status();
  std::error_code error;
  if (!std::filesystem::exists(*path, error))
    return absl::FailedPreconditionError(absl::StrCat(
        "no CUDA plugin at ", *path, ": this build or installation of qshard lacks CUDA support (a -DQSHARD_CUDA=ON ",
        "build puts ", QSHARD_CUDA_PLUGIN_FILE, " next to the qshard program; ", kCudaPluginEnv, " names another path)"));
  void* handle = dlopen(path->c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr)
    return absl::FailedPreconditionError(
        absl::StrCat("cannot load the CUDA plugin ", *path, ": ", dlerror(),
                     " (it needs the CUDA toolkit's libcudart, libcublas, libcublasLt and libcusolver)"));
  using Entry = const CudaPluginV1* (*)();
  const auto entry = reinterpret_cast<Entry>(dlsym(handle, kCudaPluginEntry));
  if (entry == nullptr)
    return absl::FailedPreconditionError(absl::StrCat(*path, " is not a qshard CUDA plugin: ", dlerror()));
  const CudaPluginV1* plugin = entry();
  if (plugin->abi != kCudaPluginAbi || std::strcmp(plugin->compiler, __VERSION__) != 0)
    return absl::FailedPreconditionError(absl::StrCat(
        "the CUDA plugin ", *path, " has ABI ", plugin->abi, " from compiler ", plugin->compiler,
        "; this program needs ABI ", kCudaPluginAbi, " from compiler ", __VERSION__, ": use the plugin built with it"));
  return plugin;
}

}  // namespace

bool BuiltWithCuda() { return true; }

absl::StatusOr<std::shared_ptr<CudaDevice>> OpenCudaDevice(int index, uint64_t memory_bytes) {
  absl::StatusOr<const CudaPluginV1*> plugin = LoadPlugin();
  if (!plugin.ok()) return WithContext(plugin.status(), absl::StrCat("--device cuda:", index));
  return (*plugin)->open_device(index, memory_bytes);
}

}  // namespace qshard
