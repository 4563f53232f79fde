// CudaSession's --device-memory budget (worker/cuda/cuda_session.h): FreeBytes stays within it and
// shrinks by what this process allocates, whatever the device has free beyond it; without a budget
// it is the device's free memory. Needs the emulation (QSHARD_CUDA=EMULATED) for a device whose
// free memory is known to the byte.
#include "worker/cuda/cuda_session.h"

#include <cstdlib>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cuda/device_buffer.h"

namespace qshard {
namespace {

TEST(DeviceMemoryBudgetTest, CountsWhatTheFreeMemoryLostSinceOpeningAgainstTheBudget) {
  const DeviceMemoryBudget none{0, 1000};
  EXPECT_EQ(none.Free(700), 700u);
  const DeviceMemoryBudget budget{300, 1000};
  EXPECT_EQ(budget.Free(1000), 300u);
  EXPECT_EQ(budget.Free(900), 200u);   // 100 taken since opening
  EXPECT_EQ(budget.Free(600), 0u);     // more taken than the budget: never below 0
  EXPECT_EQ(budget.Free(1200), 300u);  // freed by another process: the budget whole
  EXPECT_EQ((DeviceMemoryBudget{5000, 1000}).Free(900), 900u);  // a budget beyond the device
}

#ifdef QSHARD_CUDA_EMULATED

absl::StatusOr<size_t> FreeBytes(CudaSession& session) {
  auto entered = session.Enter();
  if (!entered.ok()) return entered.status();
  return session.FreeBytes("the test's free memory");
}

TEST(CudaSessionTest, ABudgetBoundsTheFreeMemoryAndWhatThisProcessAllocatesCountsAgainstIt) {
  // A 1 GB device (read at the emulation's first call; each test runs in its own process).
  ASSERT_EQ(setenv("QSHARD_EMULATED_DEVICE_GB", "1", 1), 0);
  absl::StatusOr<std::shared_ptr<CudaSession>> whole = CudaSession::Open(0);
  absl::StatusOr<std::shared_ptr<CudaSession>> budgeted = CudaSession::Open(0, 10'000'000);
  absl::StatusOr<std::shared_ptr<CudaSession>> beyond = CudaSession::Open(0, 2'000'000'000);
  ASSERT_TRUE(whole.ok() && budgeted.ok() && beyond.ok()) << whole.status() << budgeted.status() << beyond.status();
  EXPECT_THAT((*budgeted)->description(), ::testing::HasSubstr(", at most 10000000 bytes of it for this process "
                                                               "(--device-memory)"));
  EXPECT_THAT((*whole)->description(), ::testing::Not(::testing::HasSubstr("--device-memory")));
  // The emulation's sessions hold no device memory once open.
  EXPECT_EQ(FreeBytes(**whole).value(), 1'000'000'000u);
  EXPECT_EQ(FreeBytes(**budgeted).value(), 10'000'000u);
  EXPECT_EQ(FreeBytes(**beyond).value(), 1'000'000'000u);
  {
    gpu::DeviceBuffer<char> taken;
    ASSERT_TRUE(taken.Allocate(4'000'000).ok());
    EXPECT_EQ(FreeBytes(**whole).value(), 996'000'000u);
    EXPECT_EQ(FreeBytes(**budgeted).value(), 6'000'000u);
    gpu::DeviceBuffer<char> more;
    ASSERT_TRUE(more.Allocate(8'000'000).ok());  // past the budget, not refused: it steers, it does not stop
    EXPECT_EQ(FreeBytes(**whole).value(), 988'000'000u);
    EXPECT_EQ(FreeBytes(**budgeted).value(), 0u);
  }
  EXPECT_EQ(FreeBytes(**budgeted).value(), 10'000'000u);

  // A refusal made from the budget's free memory names the flag; the whole device's does not.
  const absl::Status refusal = absl::ResourceExhaustedError("X needs 1 GB and 0.01 GB are free");
  EXPECT_EQ((*budgeted)->WithBudget(refusal).message(), "--device-memory 10000000: X needs 1 GB and 0.01 GB are free");
  EXPECT_EQ((*budgeted)->WithBudget(refusal).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ((*whole)->WithBudget(refusal), refusal);
}

#else

TEST(CudaSessionTest, NeedsTheHostEmulation) { GTEST_SKIP() << "counts the emulated device's memory to the byte"; }

#endif

}  // namespace
}  // namespace qshard
