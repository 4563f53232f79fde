#include "kernels/cpu/cpu_features.h"

#include <cpuid.h>

#include <cstdint>

namespace qshard::kernels {
namespace {

bool Bit(unsigned reg, int bit) { return (reg >> bit) & 1u; }

// XCR0: which register files the OS saves on a context switch. A feature bit without OS
// support (e.g. AVX-512 disabled by the kernel or hypervisor) must read as absent.
uint64_t EnabledStateMask() {
  uint32_t lo = 0, hi = 0;
  __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

CpuFeatures Detect() {
  CpuFeatures f;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = Bit(c, 27);
  const bool fma = Bit(c, 12);
  if (!osxsave) return f;
  const uint64_t xcr0 = EnabledStateMask();
  const bool ymm_saved = (xcr0 & 0x6) == 0x6;            // SSE and AVX state
  const bool zmm_saved = ymm_saved && (xcr0 & 0xe0) == 0xe0;  // opmask, ZMM_Hi256, Hi16_ZMM
  if (!ymm_saved || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
  f.fma = fma;
  f.avx2 = Bit(b, 5);
  if (zmm_saved) {
    f.avx512f = Bit(b, 16);
    f.avx512bw = Bit(b, 30);
    f.avx512vl = Bit(b, 31);
    f.avx512vnni = Bit(c, 11);
  }
  if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) {
    f.avxvnni = Bit(a, 4);
    f.avx512bf16 = zmm_saved && Bit(a, 5);
  }
  return f;
}

}  // namespace

std::string CpuFeatures::ToString() const {
  std::string s;
  auto add = [&s](bool on, const char* name) {
    if (!on) return;
    if (!s.empty()) s += ' ';
    s += name;
  };
  add(avx2, "avx2");
  add(fma, "fma");
  add(avx512f, "avx512f");
  add(avx512bw, "avx512bw");
  add(avx512vl, "avx512vl");
  add(avx512vnni, "avx512vnni");
  add(avxvnni, "avxvnni");
  add(avx512bf16, "avx512bf16");
  return s.empty() ? "none" : s;
}

const CpuFeatures& GetCpuFeatures() {
  static const CpuFeatures features = Detect();
  return features;
}

}  // namespace qshard::kernels
