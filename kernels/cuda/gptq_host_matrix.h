// Host copies of GPTQ layers for the standalone check: random layers packed in the checkpoint
// layout of kernels/layout/gptq_packed.h, the plain (one value at a time) unpacking of that layout, and the
// fp64 reference product computed from it.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cuda/gptq_layout.h"

namespace qshard::gpu {

struct HostGptqMatrix {
  int in_features = 0;
  int out_features = 0;
  int bits = 0;
  int groups = 0;
  std::vector<int32_t> qweight;  // [in * bits / 32, out]
  std::vector<int32_t> qzeros;   // [groups, out * bits / 32]
  std::vector<__half> scales;    // [groups, out]
  std::vector<int32_t> g_idx;    // [in]

  int QuantizedValue(int i, int o) const;  // q(i, o)
  int Zero(int group, int o) const;        // stored zero + 1
  double Scale(int group, int o) const;
  double Weight(int i, int o) const;  // scale · (q − zero) for input i's group
  // A view of the same shape over device copies of the four arrays.
  GptqMatrixView View(const int32_t* qweight_device, const int32_t* qzeros_device,
                      const __half* scales_device, const int32_t* g_idx_device) const;
};

// A random layer: uniform values and stored zeros over all 2^bits codes, scales in
// [0.002, 0.02) (so weights are O(0.1), as in trained layers). group_size −1 puts every input
// in one group; act_order deals the inputs to the groups in a random order, as GPTQ's
// act-order does, so that g_idx is not monotonic.
HostGptqMatrix RandomGptqMatrix(int in_features, int out_features, int bits, int group_size,
                                bool act_order, std::mt19937_64& rng);

// Random fp16 activations, roughly standard normal.
std::vector<__half> RandomActivations(int tokens, int in_features, std::mt19937_64& rng);

// y[t, o] = Σ_i x[t, i] · W[o, i] in fp64, and term_norm[t, o] = sqrt(Σ_i (x[t, i] W[o, i])²),
// the scale of the rounding errors a correct fp16/fp32 computation may make.
struct ReferenceProduct {
  std::vector<double> y;          // [tokens, out]
  std::vector<double> term_norm;  // [tokens, out]
};
ReferenceProduct ReferenceGptqMatmul(const HostGptqMatrix& w, const std::vector<__half>& x,
                                     int tokens);

}  // namespace qshard::gpu
