// A float64 host reference of one decoder layer's forward pass (OPT and LLaMA, one window),
// written with plain loops as the Hugging Face models state the math, for
// qshard_cuda_forward_check to hold the device layer to; random layers of given shapes; and
// the comparison and tolerances the check applies. tests/cuda/layer_forward_reference_test.cc
// holds the CPU forward pass (worker/model) to the same reference and tolerances, so that the
// reference is known to be the worker's math before any GPU runs it.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cuda/layer_architecture.h"

namespace qshard::gpu {

struct HostLinear {
  std::vector<float> weight;  // [out, in] row-major
  std::vector<float> bias;    // [out], or empty
};

struct HostLayer {
  LayerArchitecture arch;
  HostLinear q, k, v, o, up, gate, down;  // OPT: out_proj, fc1, fc2 as o, up, down; no gate
  std::vector<float> norm1_weight, norm1_bias, norm2_weight, norm2_bias;  // biases: OPT only
};

// Weights U(−a, a) with variance 1/in (q and k 1.5 times larger, so that attention is neither
// flat nor one-hot), norm weights around 1, biases around 0.1, for every tensor `arch` has.
HostLayer RandomHostLayer(const LayerArchitecture& arch, std::mt19937_64& rng);

// Hidden states [tokens, hidden]: N(0, 1) with a per-token offset (LayerNorm's mean has work)
// and a few outlier channels ten times larger, as residual streams have.
std::vector<float> RandomHidden(int64_t tokens, int64_t hidden, std::mt19937_64& rng);

struct ReferenceLayerResult {
  std::vector<double> group_inputs[kLayerGroupCount];  // [tokens, GroupWidth(g)]
  std::vector<double> out;                             // [tokens, hidden]
  // q [tokens, q_width] and k [tokens, kv_width] as the attention reads them (biases, RoPE).
  std::vector<double> attention_q, attention_k;
};

// The layers and window lengths qshard_cuda_forward_check runs (and the CPU test with it):
// widths that are not multiples of 32, odd head counts, GQA 2:1 and 4:1, a query width unlike
// the hidden width, OPT pre- and post-LN, with and without biases; 1, 7, 129 tokens (and 300:
// three query blocks of attention_device.h, the last one partial), and one layer of realistic
// head width (64) and a 640-token window, where cuBLAS picks its larger kernels.
struct ForwardCase {
  const char* name;
  LayerArchitecture arch;
  std::vector<int64_t> tokens;
};
std::vector<ForwardCase> ForwardCheckCases();

// The layer on `hidden` [tokens, hidden] (positions 0..tokens−1), every operation in float64
// on the float32 weights and inputs. The one float32 step is RoPE's angle: HF (and the CPU path)
// define it as the float32 product position · (float32 inverse frequency), so that is the model.
ReferenceLayerResult ReferenceLayerForward(const HostLayer& layer, const std::vector<float>& hidden, int64_t tokens);

// Row i of one head's causal softmax in float64: probabilities[j], j ≤ i, of the scores
// scale·(q_row · k_j), k_j = k + j·k_ld (head_dim values each).
void CausalProbabilitiesRow(const double* q_row, const double* k, int64_t k_ld, int64_t head_dim, int64_t i,
                            double scale, double* probabilities);

// How far a float32 result is from the reference: the largest element error over the
// reference's root mean square, and the relative Frobenius error. Non-finite values count as
// infinitely far.
struct Deviation {
  double max_over_rms = 0.0;
  double relative_frobenius = 0.0;
};
Deviation Compare(const std::vector<float>& result, const std::vector<double>& reference);

// The tolerances, for every group input and the output (derivation in docs/cuda.md, "The layer
// forward on the device"): float32 rounding through the layer's dependent stages of dot
// products of length ≤ ffn. The CPU path (float32 like the device) measures ≤ 1.5e-5 of the RMS
// per element (OPT post-LN, whose unnormalized outlier channels make large, sensitive attention
// scores; ≤ 1.2e-5 elsewhere) and ≤ 7.8e-7 relative Frobenius on ForwardCheckCases: the limits
// are 13× those. One token of seven nudged by ±0.01 moves the attention output by 2.8e-2 and
// 3.6e-3; a wrong mask, head mapping, bias or rotation moves it by as much or more.
inline constexpr double kForwardMaxOverRms = 2e-4;
inline constexpr double kForwardRelativeFrobenius = 1e-5;
inline bool WithinForwardTolerance(const Deviation& d) {
  return d.max_over_rms <= kForwardMaxOverRms && d.relative_frobenius <= kForwardRelativeFrobenius;
}

}  // namespace qshard::gpu
