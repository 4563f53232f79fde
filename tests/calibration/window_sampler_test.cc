#include "worker/calibration/window_sampler.h"

#include <set>

#include "gtest/gtest.h"

namespace qshard {
namespace {

TEST(SplitMix64Test, MatchesThePublishedSequence) {
  // Reference values of SplitMix64 seeded with 1234567 (Vigna's splitmix64.c).
  SplitMix64 rng(1234567);
  EXPECT_EQ(rng.Next(), 6457827717110365317ULL);
  EXPECT_EQ(rng.Next(), 3203168211198807973ULL);
  EXPECT_EQ(rng.Next(), 9817491932198370423ULL);
}

TEST(WindowSamplerTest, SameSeedSameWindowsOtherSeedOtherWindows) {
  auto a = SampleWindowStarts(100000, 16, 512, 0);
  auto b = SampleWindowStarts(100000, 16, 512, 0);
  auto c = SampleWindowStarts(100000, 16, 512, 1);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_NE(*a, *c);
}

TEST(WindowSamplerTest, StartsStayInRangeAndCoverIt) {
  const int64_t tokens = 20, seqlen = 8;
  auto starts = SampleWindowStarts(tokens, 2000, seqlen, 7);
  ASSERT_TRUE(starts.ok());
  std::set<int64_t> seen;
  for (int64_t s : *starts) {
    EXPECT_GE(s, 0);
    EXPECT_LE(s + seqlen, tokens);
    seen.insert(s);
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(tokens - seqlen + 1));  // every start reachable
}

TEST(WindowSamplerTest, RejectsTextShorterThanAWindow) {
  auto starts = SampleWindowStarts(100, 4, 512, 0);
  EXPECT_EQ(starts.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(starts.status().message().find("fewer than one window"), std::string::npos);
}

}  // namespace
}  // namespace qshard
