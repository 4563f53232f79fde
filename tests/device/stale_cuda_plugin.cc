// A CUDA plugin from another build, for cuda_plugin_test: the right entry point, an ABI number
// this program does not speak and no device code (built in CUDA builds, tests/CMakeLists.txt).
#include "worker/device/cuda_plugin.h"

extern "C" const qshard::CudaPluginV1* qshard_cuda_plugin_v1() {
  static const qshard::CudaPluginV1 plugin{qshard::kCudaPluginAbi + 1, __VERSION__, nullptr};
  return &plugin;
}
