// The contract between the qshard program and its CUDA plugin (libqshard_cuda_plugin.so, built
// from worker/cuda beside the program): one C symbol, qshard_cuda_plugin_v1, that the program
// finds with dlsym (worker/device/plugin) and that hands back OpenCudaDevice's implementation.
// Behind that one C symbol the interface is C++ (CudaDevice and what it passes: absl::Status,
// tensors, solvers): both sides are built from the same tree by the same compiler, and the
// loader refuses a plugin whose ABI number or compiler differs (docs/cuda.md, "The CUDA plugin").
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "worker/device/cuda_device.h"

namespace qshard {

// Raise it whenever CudaDevice, ForwardDevice, DeviceModel, StatisticsDevice, Solver, RoundingLearner or a type they pass
// changes shape, so that a plugin left from an older build is refused rather than called.
inline constexpr uint32_t kCudaPluginAbi = 10;  // 2: aespa's attention statistics (NewAttentionStats, Run's sink); 3: CudaDevice::NewModel (evaluation); 4: CudaDevice::MakeRoundingLearner (aespa's AdaRound); 5: its GPTQ solver takes fixed grids, ζ, row blocks, keep_unrounded (an older plugin would refuse them mid-job); 6: NewForward takes ForwardStatistics (the propagation, for the device bound per mode); 7: its GPTQ solver takes --mse (an older plugin would refuse it mid-job); 8: open_device takes --device-memory's budget; 9: ForwardDevice::MemoryPlan (the device plan in the log and report), value_heads_per_pass (`qshard plan --device-memory`); 10: value_heads_per_pass gone (the plan's formulas are built in every build: worker/device/cuda_device_memory.h)

// Where the program looks for the plugin instead of next to itself (/proc/self/exe's directory).
inline constexpr char kCudaPluginEnv[] = "QSHARD_CUDA_PLUGIN";

struct CudaPluginV1 {
  uint32_t abi;          // kCudaPluginAbi of the plugin's build
  const char* compiler;  // __VERSION__ of the compiler that built it
  absl::StatusOr<std::shared_ptr<CudaDevice>> (*open_device)(int index, uint64_t memory_bytes);  // as OpenCudaDevice
};

}  // namespace qshard

// The plugin's entry point: its one exported symbol.
extern "C" const qshard::CudaPluginV1* qshard_cuda_plugin_v1();
inline constexpr char kCudaPluginEntry[] = "qshard_cuda_plugin_v1";
