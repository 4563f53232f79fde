#include "worker/calibration/window_sampler.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace qshard {

uint64_t SplitMix64::Next() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t SplitMix64::Below(uint64_t bound) {
  // Lemire (2019): multiply-shift with rejection of the biased low range.
  unsigned __int128 m = static_cast<unsigned __int128>(Next()) * bound;
  uint64_t low = static_cast<uint64_t>(m);
  if (low < bound) {
    const uint64_t threshold = -bound % bound;
    while (low < threshold) {
      m = static_cast<unsigned __int128>(Next()) * bound;
      low = static_cast<uint64_t>(m);
    }
  }
  return static_cast<uint64_t>(m >> 64);
}

double SplitMix64::Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

absl::StatusOr<std::vector<int64_t>> SampleWindowStarts(int64_t num_tokens, int64_t nsamples,
                                                        int64_t seqlen, uint64_t seed) {
  if (nsamples <= 0) return absl::InvalidArgumentError("--nsamples must be positive");
  if (seqlen <= 0) return absl::InvalidArgumentError("--seqlen must be positive");
  if (num_tokens < seqlen)
    return absl::InvalidArgumentError(absl::StrCat("calibration text has ", num_tokens,
                                                   " tokens, fewer than one window of --seqlen ", seqlen));
  SplitMix64 rng(seed);
  std::vector<int64_t> starts(nsamples);
  for (int64_t& s : starts) s = static_cast<int64_t>(rng.Below(static_cast<uint64_t>(num_tokens - seqlen + 1)));
  return starts;
}

}  // namespace qshard
