// The test programs' main: OpenBLAS's kernels chosen as the qshard program chooses them
// (kernels/cpu/blas_core.h), so that a test comparing its own process's bytes with those of the
// qshard processes it starts compares runs of the same kernels; then Google Test.
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cpu/blas_core.h"

int main(int argc, char** argv) {
  qshard::kernels::RestartWithBlasKernelsForThisCpu(argv);
  testing::InitGoogleMock(&argc, argv);
  return RUN_ALL_TESTS();
}
