// Counter-based random numbers for filling benchmark data on the device (a splitmix64 hash
// of seed + index), so that filling gigabytes takes milliseconds and needs no state.
#pragma once

#include <cstdint>

namespace qshard::gpu {

__device__ __forceinline__ uint64_t Mix(uint64_t z) {  // splitmix64 finaliser
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform in [0, 1) with 24 random bits.
__device__ __forceinline__ float UnitFloat(uint64_t seed, uint64_t index) {
  return static_cast<float>(Mix(seed + index) >> 40) * (1.0f / 16777216.0f);
}

}  // namespace qshard::gpu
