// Which kernels OpenBLAS runs on this CPU. Debian 12's OpenBLAS (0.3.21, built DYNAMIC_ARCH)
// chooses them once, as the library loads, from the CPU's model number, or from the
// OPENBLAS_CORETYPE variable where set; a model newer than the library reads as "Prescott", its
// SSE3 fallback. On an Emerald Rapids Xeon that made every fp32 GEMM 2.4× slower than with its
// AVX-512 ("SkylakeX") kernels (docs/kernels.md, "OpenBLAS's kernels"), and so the forward pass,
// the Hessians and the CPU solvers. The qshard program therefore starts again, once, with
// OPENBLAS_CORETYPE set when the library's choice is below the CPU (tools/qshard/main.cc).
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

}  // namespace qshard::kernels
