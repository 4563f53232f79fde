// Which kernels OpenBLAS runs on this CPU. Debian 12's OpenBLAS (0.3.21, built DYNAMIC_ARCH)
// chooses them once, as the library loads, from the CPU's model number, or from the
// OPENBLAS_CORETYPE variable where set; a model newer than the library reads as "Prescott", its
// SSE3 fallback. On an Emerald Rapids Xeon that made every fp32 GEMM 2.4× slower than with its
// AVX-512 ("SkylakeX") kernels (docs/kernels.md, "Results on an Emerald Rapids Xeon"), and so the
// forward pass, the Hessians and the CPU solvers. The qshard program and the test programs
// therefore start again, once, with OPENBLAS_CORETYPE set when the library's choice is below the
// CPU (RestartWithBlasKernelsForThisCpu), so that every process of a job, and a test's own process
// beside the qshard processes it starts, runs the same kernels.
#pragma once

#include <string>
#include <string_view>

#include "kernels/cpu/cpu_features.h"

namespace qshard::kernels {

// openblas_get_corename(): "SkylakeX", "Haswell", "Prescott", ...
std::string BlasCoreName();

// The core to ask OpenBLAS for on a CPU with `cpu`'s features when it chose `chosen`: where
// `chosen` lacks AVX2 and the CPU has it, "SkylakeX" with AVX-512, else "Haswell"; empty where
// the choice stands (a core with AVX2 is never second-guessed: Zen 4 reads as "Zen").
std::string BlasCoreFor(std::string_view chosen, const CpuFeatures& cpu);

// BlasCoreFor this process's library and CPU; empty where OPENBLAS_CORETYPE is already set.
std::string BlasCoreToRequest();

// Where BlasCoreToRequest names a core: sets OPENBLAS_CORETYPE and runs this program again from
// its start with `argv` (/proc/self/exe, the same process id). Returns only where there is
// nothing to do or the exec failed (the library's own kernels then stay in use). Call it first
// in main, before any thread starts.
void RestartWithBlasKernelsForThisCpu(char** argv);

}  // namespace qshard::kernels
