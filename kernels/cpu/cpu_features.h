// The x86 SIMD features the CPU kernels choose between, read once (cpuid and the OS's saved
// register state, xgetbv) the first time they are asked for.
#pragma once

#include <string>

namespace qshard::kernels {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512vnni = false;
  bool avxvnni = false;  // VEX-encoded vpdpbusd on 256-bit registers (Alder Lake and later)
  bool avx512bf16 = false;  // vdpbf16ps, vcvtne2ps2bf16 (Cooper Lake, Sapphire Rapids, Zen 4)

  bool HasAvx2Fma() const { return avx2 && fma; }
  bool HasAvx512() const { return avx512f && avx512bw && avx512vl && fma; }
  bool HasAvxVnni() const { return HasAvx2Fma() && avxvnni; }
  bool HasAvx512Vnni() const { return HasAvx512() && avx512vnni; }
  bool HasAvx512Bf16() const { return HasAvx512() && avx512bf16; }
  std::string ToString() const;  // e.g. "avx2 fma avx512f avx512bw avx512vl avx512vnni avx512bf16"
};

// Detected once per process; the same object afterwards.
const CpuFeatures& GetCpuFeatures();

}  // namespace qshard::kernels
