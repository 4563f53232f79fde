// What the standalone CUDA check and benchmark programs share: their exit codes, the checks'
// `--seed N` option, and finding device 0.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "kernels/cuda/cuda_status.h"

namespace qshard::gpu {

constexpr int kExitFailed = 1;     // a check failed, or bad arguments
constexpr int kExitCudaError = 2;  // a CUDA error stopped the run
constexpr int kExitNoDevice = 77;  // ctest's SKIP_RETURN_CODE

// Reads `[--seed N]` into seed; prints the usage and returns false on anything else.
inline bool ParseSeedOption(int argc, char** argv, uint64_t& seed) {
  for (int a = 1; a < argc; ++a) {
    if (std::strcmp(argv[a], "--seed") == 0 && a + 1 < argc) {
      seed = std::strtoull(argv[++a], nullptr, 10);
    } else {
      std::fprintf(stderr, "usage: %s [--seed N]\n", argv[0]);
      return false;
    }
  }
  return true;
}

// Device 0's properties: 0, or kExitNoDevice / kExitCudaError with the reason in `why`.
inline int FindDevice(cudaDeviceProp& props, std::string& why) {
  int devices = 0;
  const cudaError_t probe = cudaGetDeviceCount(&devices);
  if (probe != cudaSuccess || devices == 0) {
    why = probe != cudaSuccess ? DescribeCudaError(probe) : "none found";
    return kExitNoDevice;
  }
  const cudaError_t read = cudaGetDeviceProperties(&props, 0);
  if (read != cudaSuccess) {
    why = "cannot read the properties of device 0: " + DescribeCudaError(read);
    return kExitCudaError;
  }
  return 0;
}

// The start of a check program, after its device-free contract checks (`passed`): parses the
// options and finds device 0. Returns −1 to go on, else the status to exit with now (a usage
// error; no device: skipped, unless a contract check already failed; a CUDA error).
inline int StartCheck(int argc, char** argv, bool passed, uint64_t& seed, cudaDeviceProp& props) {
  if (!ParseSeedOption(argc, argv, seed)) return kExitFailed;
  std::string why;
  const int found = FindDevice(props, why);
  if (found == kExitNoDevice) {
    std::printf("SKIP no CUDA device (%s)\n", why.c_str());
    return passed ? kExitNoDevice : kExitFailed;
  }
  if (found != 0) std::printf("ERROR %s\n", why.c_str());
  return found != 0 ? found : -1;
}

}  // namespace qshard::gpu
