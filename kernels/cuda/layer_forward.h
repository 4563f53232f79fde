// One decoder layer's forward pass on the device for one window of tokens, the counterpart of
// worker/model/decoder_layers.h's RunDecoderLayer: OPT (LayerNorm before or after each block,
// biases, ReLU MLP; learned positions are added before the first layer, outside) and LLaMA
// (RMSNorm, RoPE, grouped-query attention, SiLU-gated MLP), causal attention. Activations and
// weights are float32, every product a cuBLAS SGEMM in its default math mode (IEEE float32, no
// TF32). The inputs of the four linear groups stay in the scratch after the pass, on the device,
// where DeviceHessianSum::AddWindow (hessian_device.h) can read them without a host copy.
#pragma once

#include <cstdint>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/device_memory_bytes.h"  // LayerForwardScratchBytes
#include "kernels/cuda/layer_architecture.h"
#include "kernels/cuda/solver_context.h"

namespace qshard::gpu {

// A linear whose product the device computes from another form of W than a float32 matrix (a
// quantized checkpoint's packed weights: quantized_linear_device.h), for evaluation.
class DeviceLinearKernel {
 public:
  virtual ~DeviceLinearKernel() = default;
  // y [tokens, out] = x [tokens, in] · Wᵀ (y += it when `accumulate`), float32 in and out,
  // without bias, queued on the context's stream.
  virtual CudaStatus Apply(const SolverContext& context, const float* x, int64_t tokens, float* y,
                           bool accumulate) = 0;
};

// A linear's device weight [out, in] (row-major: torch's nn.Linear layout) and its bias [out]
// (null when the architecture gives the linear none). Shapes come from the architecture. Instead
// of `weight`, `kernel` may compute the product (never both); calibration always sets `weight`.
struct DeviceLinear {
  const float* weight = nullptr;
  const float* bias = nullptr;
  DeviceLinearKernel* kernel = nullptr;
};

// The device weights of one layer. The pointers are borrowed: the caller owns the memory.
struct DeviceLayerWeights {
  LayerArchitecture arch;
  DeviceLinear q, k, v;
  DeviceLinear o;     // OPT out_proj
  DeviceLinear up;    // OPT fc1
  DeviceLinear gate;  // LLaMA only
  DeviceLinear down;  // OPT fc2
  // The norm in front of the attention (LLaMA input_layernorm, OPT self_attn_layer_norm) and in
  // front of the MLP (post_attention_layernorm, final_layer_norm), [hidden] each; the biases
  // are OPT's (null for LLaMA).
  const float* norm1_weight = nullptr;
  const float* norm1_bias = nullptr;
  const float* norm2_weight = nullptr;
  const float* norm2_bias = nullptr;
};

// Every pointer the architecture needs is set, and no bias it does not have.
CudaStatus ValidateDeviceLayer(const DeviceLayerWeights& weights);

// The working memory of the calls below, grown on demand and reused call after call. After a
// call, group_input(g) is the input of group g of that window, [tokens, GroupWidth(g)], valid
// (once the stream gets there) until a later call computes group g again with this scratch. Its
// size for a window: LayerForwardScratchBytes (device_memory_bytes.h).
class LayerForwardScratch {
 public:
  const float* group_input(LayerGroup group) const { return groups_[static_cast<int>(group)].get(); }
  // The q [tokens, q_width] and k [tokens, kv_width] the attention read when group 1's input was
  // last computed with this scratch: after the biases and RoPE, before the score scale (aespa's
  // statistics read them with group 0's input: attention_stats_device.h).
  const float* attention_queries() const { return q_.get(); }
  const float* attention_keys() const { return k_.get(); }
  size_t bytes() const;

 private:
  friend CudaStatus ComputeGroupInputOnDevice(const SolverContext&, const DeviceLayerWeights&, LayerGroup,
                                              const float*, int64_t, LayerForwardScratch&);
  friend CudaStatus AddGroupOutputOnDevice(const SolverContext&, const DeviceLayerWeights&, LayerGroup, float*,
                                           int64_t, LayerForwardScratch&);
  friend CudaStatus RunLayerCachedOnDevice(const SolverContext&, const DeviceLayerWeights&, float*, int64_t, int64_t,
                                           float*, float*, LayerForwardScratch&);
  CudaStatus Reserve(const LayerArchitecture& arch, int64_t tokens);

  int64_t computed_[kLayerGroupCount] = {};  // tokens of the window each group input was last computed for
  DeviceBuffer<float> groups_[kLayerGroupCount];
  DeviceBuffer<float> q_, k_, v_;
  DeviceBuffer<float> up_;  // LLaMA's up projection, before it gates
  DeviceBuffer<float> scores_;
  DeviceBuffer<float> rope_cos_, rope_sin_;  // [tokens, head_dim / 2]
};

// hidden_out [tokens, hidden] = the layer applied to hidden_in [tokens, hidden], one window
// (positions 0..tokens−1), queued on the context's stream (its cuBLAS handle is bound to it,
// so the stream is the context's). hidden_out may be hidden_in (in place); no other overlap.
CudaStatus RunLayerForwardOnDevice(const SolverContext& context, const DeviceLayerWeights& weights,
                                   const float* hidden_in, float* hidden_out, int64_t tokens,
                                   LayerForwardScratch& scratch);

// The layer cut where true-sequential calibration needs it (worker/model/decoder_layers.h's
// GroupInput and AddGroupOutput), so that a group's input can be computed again with the
// earlier groups' weights already quantized, without recomputing the whole layer:
// ComputeGroupInputOnDevice writes group g's input into the scratch, from `residual`
// [tokens, hidden] for groups 0 and 2 (ignored for 1 and 3), from the scratch's input of group
// g − 1 for groups 1 and 3 (which must have been computed for this window length first);
// AddGroupOutputOnDevice adds group 1's (o) or 3's (down) linear of its input to `residual`, and
// for OPT post-LN normalizes it. RunLayerForwardOnDevice is the six calls in a row (groups 0, 1,
// output 1, groups 2, 3, output 3), and gives the same bytes as making them.
CudaStatus ComputeGroupInputOnDevice(const SolverContext& context, const DeviceLayerWeights& weights, LayerGroup group,
                                     const float* residual, int64_t tokens, LayerForwardScratch& scratch);
CudaStatus AddGroupOutputOnDevice(const SolverContext& context, const DeviceLayerWeights& weights, LayerGroup group,
                                  float* residual, int64_t tokens, LayerForwardScratch& scratch);

// Decoding with a key/value cache: `hidden` [tokens, hidden] of positions first_position ..
// first_position + tokens − 1 through the layer in place, their keys and values written into
// rows first_position .. of k_cache and v_cache [positions, kv_heads·head_dim] (after RoPE), and
// their queries attending to every cached position up to their own (CachedAttentionOnDevice).
// The rest of the layer is the stages above (groups 2 and 3 and their outputs).
CudaStatus RunLayerCachedOnDevice(const SolverContext& context, const DeviceLayerWeights& weights, float* hidden,
                                  int64_t tokens, int64_t first_position, float* k_cache, float* v_cache,
                                  LayerForwardScratch& scratch);

// FLOPs of one window: the linears' 2·tokens·in·out each and the causal attention's
// (attention_plan.h); norms and elementwise work not counted.
double LayerForwardFlops(const LayerArchitecture& arch, int64_t tokens);

}  // namespace qshard::gpu
