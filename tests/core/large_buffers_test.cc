// Large buffers: a ZeroedVector holds zeros whether or not its pages were populated first, and
// populating any range (unaligned ends, less than a page, empty) leaves memory as it was.
#include "core/large_buffers.h"

#include <cstdint>
#include <vector>

#include "gtest/gtest.h"

namespace qshard {
namespace {

TEST(LargeBuffersTest, ZeroedVectorsAreZeroBelowAndAboveThePopulateThreshold) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{1000}, (size_t{1} << 20) / sizeof(double) + 3}) {
    const std::vector<double> zeros = ZeroedVector<double>(n);
    ASSERT_EQ(zeros.size(), n);
    for (double v : zeros) ASSERT_EQ(v, 0.0);
    const UninitializedVector<float> also = ZeroedVector<float, UninitializedAllocator<float>>(n);
    ASSERT_EQ(also.size(), n);
    for (float v : also) ASSERT_EQ(v, 0.0f);
  }
}

TEST(LargeBuffersTest, PopulatingKeepsTheContents) {
  std::vector<uint8_t> bytes(3 * 4096 + 123);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 7 + 1);
  const std::vector<uint8_t> before = bytes;
  PopulatePages(bytes.data() + 5, bytes.size() - 9);  // unaligned at both ends
  PopulatePages(bytes.data() + 17, 100);              // inside one page: nothing whole to map
  PopulatePages(bytes.data(), 0);
  EXPECT_EQ(bytes, before);
}

TEST(LargeBuffersTest, AnUninitializedVectorTakesValuesItIsGiven) {
  UninitializedVector<double> values(5);  // default-initialized: only written elements are read
  for (size_t i = 0; i < values.size(); ++i) values[i] = 0.5 * static_cast<double>(i);
  values.resize(7, 2.0);  // a value given is a value constructed
  EXPECT_EQ(values[3], 1.5);
  EXPECT_EQ(values[5], 2.0);
  EXPECT_EQ(values[6], 2.0);
  const UninitializedVector<double> copy = values;
  EXPECT_EQ(copy, values);
}

}  // namespace
}  // namespace qshard
