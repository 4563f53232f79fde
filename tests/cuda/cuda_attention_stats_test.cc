// aespa's attention statistics through the CUDA glue (worker/cuda/cuda_attention_stats.cc) on the
// host emulation of CUDA: all key/value heads' values' sums at once, or in slices of heads (each
// later slice a pass over the kept windows), with the same bytes either way; RESOURCE_EXHAUSTED
// when a slice does not fit the free memory, set by a filler allocation. Needs the emulation
// (QSHARD_CUDA=EMULATED): a GPU's free memory cannot be set.
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cuda/attention_stats_reference.h"
#include "kernels/cuda/device_buffer.h"
#include "tests/cuda/free_memory.h"
#include "worker/cuda/cuda_attention_stats.h"

namespace qshard {
namespace {

#ifdef QSHARD_CUDA_EMULATED

using testing::FreeMemory;

bool SameSum(const HessianSum& a, const HessianSum& b) {
  return a.dim == b.dim && a.tokens == b.tokens && a.sum.size() == b.sum.size() &&
         std::memcmp(a.sum.data(), b.sum.data(), a.sum.size() * sizeof(double)) == 0 && a.abs_max == b.abs_max;
}

// Three windows on the device, as the forward pass leaves them (x, q, k each [seq, ·]).
struct DeviceWindows {
  std::vector<gpu::DeviceBuffer<float>> x, q, k;
};

class CudaAttentionStatsTest : public ::testing::Test {
 protected:
  static constexpr int64_t kSeq = 24;

  void SetUp() override {
    // A 20 MB device (read at the emulation's first call; each test runs in its own process).
    ASSERT_EQ(setenv("QSHARD_EMULATED_DEVICE_GB", "0.02", 1), 0);
    auto session = CudaSession::Open(0);
    ASSERT_TRUE(session.ok()) << session.status();
    session_ = *session;
    config_.arch = Architecture::kLlama;  // GQA 2:1, five key/value heads of 16 over hidden 160
    config_.hidden_size = 160;
    config_.intermediate_size = 256;
    config_.num_heads = 10;
    config_.num_kv_heads = 5;
    config_.head_dim = 16;
    const gpu::AttentionStatsDims d{config_.hidden_size, config_.num_heads, config_.num_kv_heads, config_.head_dim};
    for (uint64_t w = 0; w < 3; ++w) {
      const gpu::AttentionStatsWindow window = gpu::RandomAttentionStatsWindow(d, kSeq, 7 + w);
      ASSERT_TRUE(windows_.x.emplace_back().Upload(window.x).ok());
      ASSERT_TRUE(windows_.q.emplace_back().Upload(window.q).ok());
      ASSERT_TRUE(windows_.k.emplace_back().Upload(window.k).ok());
    }
  }

  // The statistics of the three windows through the glue, `value_heads` heads' values' sums at a
  // time, with `free` bytes free when made.
  absl::StatusOr<AttentionStats> Collect(int64_t value_heads, size_t free) {
    std::unique_ptr<OffHostAttentionStats> stats;
    {
      const FreeMemory room(free);
      absl::StatusOr<std::unique_ptr<OffHostAttentionStats>> made =
          NewCudaAttentionStats(session_, config_, kSeq, value_heads);
      if (!made.ok()) return made.status();
      stats = std::move(*made);
    }
    for (size_t w = 0; w < windows_.x.size(); ++w)
      if (absl::Status added = stats->AddResidentWindow(windows_.x[w].get(), windows_.q[w].get(), windows_.k[w].get());
          !added.ok())
        return added;
    AttentionStats host = AttentionStats::For(config_, kSeq);
    if (absl::Status downloaded = stats->Download(host); !downloaded.ok()) return downloaded;
    return host;
  }

  std::shared_ptr<CudaSession> session_;
  ModelConfig config_;
  DeviceWindows windows_;
};

TEST_F(CudaAttentionStatsTest, TakesTheValuesInSlicesWithTheWholesBytes) {
  const size_t all = AttentionStatsDeviceBytes(config_, kSeq), two = AttentionStatsDeviceBytes(config_, kSeq, 2);
  // Slices hold one window's x, q and k for their later passes; no slicing holds none.
  EXPECT_EQ(AttentionStatsDeviceBytes(config_, kSeq, 5), all);
  EXPECT_EQ(two - AttentionStatsDeviceBytes(config_, kSeq, 1), 8 * 160 * 160 + 4 * 160);
  ASSERT_LT(two, all);

  const absl::StatusOr<AttentionStats> whole = Collect(5, all);
  ASSERT_TRUE(whole.ok()) << whole.status();
  const absl::StatusOr<AttentionStats> sliced = Collect(2, two);  // slices of 2, 2 and 1 heads
  ASSERT_TRUE(sliced.ok()) << sliced.status();
  for (int64_t g = 0; g < config_.num_kv_heads; ++g) {
    EXPECT_GT(whole->values[g].tokens, 0);
    EXPECT_TRUE(SameSum(whole->values[g], sliced->values[g])) << "values of key/value head " << g;
    EXPECT_TRUE(SameSum(whole->queries[g], sliced->queries[g])) << "queries of key/value head " << g;
    EXPECT_TRUE(SameSum(whole->keys[g], sliced->keys[g])) << "keys of key/value head " << g;
  }
}

TEST_F(CudaAttentionStatsTest, RefusesASliceThatDoesNotFit) {
  const absl::StatusOr<AttentionStats> refused = Collect(2, AttentionStatsDeviceBytes(config_, kSeq, 2) - 1);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  EXPECT_THAT(std::string(refused.status().message()),
              ::testing::HasSubstr("(the values' sums of 2 of 5 key/value heads at a time, a 160 × 160 float64 "
                                   "sum each)"));
}

TEST_F(CudaAttentionStatsTest, ARefusalUnderADeviceMemoryBudgetNamesIt) {
  const size_t two = AttentionStatsDeviceBytes(config_, kSeq, 2);
  absl::StatusOr<std::shared_ptr<CudaSession>> budgeted = CudaSession::Open(0, two - 1);
  ASSERT_TRUE(budgeted.ok()) << budgeted.status();
  const absl::StatusOr<std::unique_ptr<OffHostAttentionStats>> refused =
      NewCudaAttentionStats(*budgeted, config_, kSeq, 2);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  EXPECT_THAT(std::string(refused.status().message()),
              ::testing::StartsWith(absl::StrCat("--device-memory ", two - 1, ": aespa's attention statistics need")));
}

#else

TEST(CudaAttentionStatsTest, NeedsTheHostEmulation) {
  GTEST_SKIP() << "sets the free memory of the emulated device";
}

#endif

}  // namespace
}  // namespace qshard
