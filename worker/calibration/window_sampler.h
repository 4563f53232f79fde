// Picks the calibration windows: `nsamples` windows of `seqlen` consecutive tokens at
// uniformly random start positions, like GPTQ's sampling, from a seeded generator whose
// output is specified here (SplitMix64 + Lemire's unbiased bounded integers), so a seed gives
// the same windows on every platform and standard library.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace qshard {

// Deterministic 64-bit generator (SplitMix64, Steele et al. 2014).
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next();
  // Uniform integer in [0, bound), bound > 0, without modulo bias.
  uint64_t Below(uint64_t bound);
  // Uniform double in [0, 1) with 53 random bits.
  double Uniform();

 private:
  uint64_t state_;
};

// Start offsets of the windows (each in [0, num_tokens - seqlen]). Fails when the text is
// shorter than one window or an argument is not positive.
absl::StatusOr<std::vector<int64_t>> SampleWindowStarts(int64_t num_tokens, int64_t nsamples,
                                                        int64_t seqlen, uint64_t seed);

}  // namespace qshard
