// Which OpenBLAS kernels the program asks for: the rule (kernels/cpu/blas_core.h), and the built
// `qshard` itself, started without OPENBLAS_CORETYPE, running kernels with the CPU's vector width
// (Debian 12's OpenBLAS reads an Emerald Rapids Xeon as "Prescott", its SSE3 fallback).
#include "kernels/cpu/blas_core.h"

#include <cstdlib>
#include <string>

#include "gtest/gtest.h"
#include "tests/coordinator/child_process.h"
#include "tests/core/scoped_temp_dir.h"

namespace qshard::kernels {
namespace {

CpuFeatures Avx2() {
  CpuFeatures cpu;
  cpu.avx2 = cpu.fma = true;
  return cpu;
}

CpuFeatures Avx512() {
  CpuFeatures cpu = Avx2();
  cpu.avx512f = cpu.avx512bw = cpu.avx512vl = true;
  return cpu;
}

TEST(BlasCoreTest, AFallbackBelowTheCpuIsReplacedByItsWidestKernels) {
  EXPECT_EQ(BlasCoreFor("Prescott", Avx512()), "SkylakeX");
  EXPECT_EQ(BlasCoreFor("Prescott", Avx2()), "Haswell");
  EXPECT_EQ(BlasCoreFor("Sandybridge", Avx2()), "Haswell");
  EXPECT_EQ(BlasCoreFor("Prescott", CpuFeatures()), "");  // nothing better to ask for
}

TEST(BlasCoreTest, AChoiceWithAvx2StandsEvenOnAnAvx512Cpu) {
  for (const char* core : {"Haswell", "SkylakeX", "Cooperlake", "Zen"}) EXPECT_EQ(BlasCoreFor(core, Avx512()), "");
}

TEST(BlasCoreTest, TheProgramRunsKernelsWithTheCpusVectorWidth) {
  ASSERT_EQ(unsetenv("OPENBLAS_CORETYPE"), 0);  // the program decides, as a user would start it
  testing::ScopedTempDir dir;
  testing::ChildProcess bench({"bench", "kernels", "--k", "64", "--n", "64", "--tokens", "1", "--bits", "4",
                               "--repeats", "1"},
                              dir.Child("bench"));
  ASSERT_EQ(bench.Wait(std::chrono::seconds(120)), 0) << bench.Stderr();
  const std::string out = bench.Stdout();
  const size_t at = out.find(", blas: OpenBLAS ");
  ASSERT_NE(at, std::string::npos) << out;
  const size_t from = at + std::string(", blas: OpenBLAS ").size();
  const std::string core = out.substr(from, out.find('\n', from) - from);
  EXPECT_EQ(BlasCoreFor(core, GetCpuFeatures()), "") << "the program ran OpenBLAS's " << core << " kernels on a CPU with "
                                                      << GetCpuFeatures().ToString();
}

}  // namespace
}  // namespace qshard::kernels
