// What the standalone CUDA check and benchmark programs share: their exit codes, the checks'
// `--seed N` option, finding device 0, and the frame of the programs that run on a SolverContext.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/solver_context.h"

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

// The device-free contract checks of a check program: calls that must come back as errors
// (or, for a valid input, must not).
class ContractChecks {
 public:
  void ExpectError(const char* what, const CudaStatus& status) {
    if (!status.ok()) return;
    std::printf("FAIL contract: %s was accepted\n", what);
    passed_ = false;
  }
  void ExpectOk(const char* what, const CudaStatus& status) {
    if (status.ok()) return;
    std::printf("FAIL contract: %s was refused: %s\n", what, status.message().c_str());
    passed_ = false;
  }
  bool passed() const { return passed_; }

 private:
  bool passed_ = true;
};

// The rest of a check program's main after StartCheck: `run_case(case, seed + index, passed)` for
// each case in order, a line per case flushed as it ends. The first CUDA error ends the run
// (kExitCudaError, naming the case by `describe`); else ALL PASSED (0) or SOME CHECKS FAILED.
template <typename Case, size_t kCount, typename RunCase, typename Describe>
int RunCheckCases(const Case (&cases)[kCount], uint64_t seed, bool passed, RunCase run_case, Describe describe) {
  for (size_t index = 0; index < kCount; ++index) {
    const CudaStatus status = run_case(cases[index], seed + index, passed);
    if (!status.ok()) {
      std::printf("ERROR %s: %s\n", describe(cases[index]).c_str(), status.message().c_str());
      return kExitCudaError;
    }
    std::fflush(stdout);
  }
  std::printf("%s\n", passed ? "ALL PASSED" : "SOME CHECKS FAILED");
  return passed ? 0 : kExitFailed;
}

// The cases of a check that runs each case at several window lengths (`c.tokens`), in order:
// run(case, tokens, seed + index, passed) for each, a line flushed after each; the first CUDA
// error ends the run, naming the case (`c.name`) and the length.
template <typename Case, typename Run>
CudaStatus RunCaseLengths(const std::vector<Case>& cases, uint64_t seed, bool& passed, Run run) {
  uint64_t index = 0;
  for (const Case& c : cases) {
    for (int64_t tokens : c.tokens) {
      const CudaStatus status = run(c, tokens, seed + index++, passed);
      if (!status.ok())
        return CudaStatus::Error(std::string(c.name) + ", " + std::to_string(tokens) + " tokens: " + status.message());
      std::fflush(stdout);
    }
  }
  return CudaStatus();
}

// Runs `body` on a SolverContext bound to `stream`, then destroys the stream; returns body's
// exit status, or kExitCudaError (said on `errors`) where the context cannot be created.
inline int RunOnContext(cudaStream_t stream, std::FILE* errors, const std::function<int(const SolverContext&)>& body) {
  int status = kExitCudaError;
  {
    SolverContext context;
    const CudaStatus init = context.Init(stream);
    if (init.ok()) {
      status = body(context);
    } else {
      std::fprintf(errors, "ERROR %s\n", init.message().c_str());
    }
  }
  cudaStreamDestroy(stream);
  return status;
}

// The whole main of a check whose cases run on a SolverContext, after its device-free contract
// checks (`passed`): StartCheck, a stream and a context on device 0, then `run_cases(context,
// seed, passed)`, whose error (a CUDA error that stopped the run, naming the case) ends it.
inline int RunContextCheck(int argc, char** argv, bool passed, uint64_t seed,
                           const std::function<CudaStatus(const SolverContext&, uint64_t, bool&)>& run_cases) {
  cudaDeviceProp props{};
  if (const int exit_now = StartCheck(argc, argv, passed, seed, props); exit_now >= 0) return exit_now;
  cudaStream_t stream = nullptr;
  if (cudaStreamCreate(&stream) != cudaSuccess) {
    std::printf("ERROR cannot create a stream on device 0\n");
    return kExitCudaError;
  }
  std::printf("device: %s (sm_%d%d), seed %llu\n", props.name, props.major, props.minor,
              static_cast<unsigned long long>(seed));
  return RunOnContext(stream, stdout, [&](const SolverContext& context) {
    const CudaStatus status = run_cases(context, seed, passed);
    if (!status.ok()) {
      std::printf("ERROR %s\n", status.message().c_str());
      return kExitCudaError;
    }
    std::printf("%s\n", passed ? "ALL PASSED" : "SOME CHECKS FAILED");
    return passed ? 0 : kExitFailed;
  });
}

// The start of a benchmark: device 0 and a stream on it. Returns −1 to go on, else the status to
// exit with (no device, or a CUDA error), having said why on stderr.
inline int StartBench(cudaDeviceProp& props, cudaStream_t& stream) {
  std::string why;
  const int found = FindDevice(props, why);
  if (found == 0 && cudaStreamCreate(&stream) == cudaSuccess) return -1;
  std::fprintf(stderr, "no usable CUDA device: %s\n", found != 0 ? why.c_str() : "cannot create a stream");
  return found != 0 ? found : kExitCudaError;
}

}  // namespace qshard::gpu
