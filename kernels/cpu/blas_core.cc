#include "kernels/cpu/blas_core.h"

#include <unistd.h>

#include <array>
#include <cstdlib>

extern "C" char* openblas_get_corename(void);

namespace qshard::kernels {
namespace {

// OpenBLAS 0.3.21's x86-64 cores with AVX2 kernels (driver/others/dynamic.c).
constexpr std::array<std::string_view, 6> kAvx2Cores = {"Haswell", "SkylakeX", "Cooperlake",
                                                        "SapphireRapids", "Zen", "Excavator"};

}  // namespace

std::string BlasCoreName() { return openblas_get_corename(); }

std::string BlasCoreFor(std::string_view chosen, const CpuFeatures& cpu) {
  for (std::string_view core : kAvx2Cores)
    if (chosen == core) return "";
  if (cpu.HasAvx512()) return "SkylakeX";
  if (cpu.HasAvx2Fma()) return "Haswell";
  return "";
}

std::string BlasCoreToRequest() {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return "";
  return BlasCoreFor(BlasCoreName(), GetCpuFeatures());
}

void RestartWithBlasKernelsForThisCpu(char** argv) {
  const std::string core = BlasCoreToRequest();
  if (core.empty()) return;
  setenv("OPENBLAS_CORETYPE", core.c_str(), 1);
  execv("/proc/self/exe", argv);
}

}  // namespace qshard::kernels
