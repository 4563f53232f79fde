// RunLayerForwardOnDevice: the layer as worker/model/decoder_layers.cc wires it, stage by stage
// (group 0's input, q/k/v and attention into group 1's input, the output projection added to the
// residual, group 2's input, the MLP into group 3's input, the down projection added), each
// stage a call into layer_ops_device.h or attention_device.h on the context's stream.
#include "kernels/cuda/layer_forward.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <string>

#include "kernels/cuda/attention_device.h"
#include "kernels/cuda/layer_ops_device.h"

namespace qshard::gpu {
namespace {

// Reallocates `buffer` when it holds fewer than `count` floats, and says so in `moved`.
CudaStatus Grow(DeviceBuffer<float>& buffer, int64_t count, bool& moved) {
  if (static_cast<int64_t>(buffer.size()) >= count) return CudaStatus();
  moved = true;
  return buffer.Allocate(static_cast<size_t>(count));
}

// What every entry point checks before queueing anything.
CudaStatus CheckCall(const SolverContext& context, const DeviceLayerWeights& w, int64_t tokens, const char* who) {
  QSHARD_CUDA_RETURN_IF_ERROR(ValidateDeviceLayer(w));
  if (tokens <= 0) return CudaStatus::Error(std::string(who) + ": tokens must be positive");
  if (context.blas() == nullptr) return CudaStatus::Error(std::string(who) + ": the context has no cuBLAS handle");
  return CudaStatus();
}

// The norm in front of block `index` (0 attention, 1 MLP) from `residual` into `out`; OPT
// post-LN has none there, and `out` is then a copy of the residual (the group's input).
CudaStatus NormInput(const DeviceLayerWeights& w, int index, const float* residual, int64_t tokens, float* out,
                     cudaStream_t stream) {
  const LayerArchitecture& a = w.arch;
  const float* weight = index == 0 ? w.norm1_weight : w.norm2_weight;
  const float* bias = index == 0 ? w.norm1_bias : w.norm2_bias;
  if (a.llama()) return RmsNormRows(residual, weight, a.norm_eps, tokens, a.hidden, out, stream);
  if (a.norm_before) return LayerNormRows(residual, weight, bias, a.norm_eps, tokens, a.hidden, out, stream);
  QSHARD_CUDA_TRY(cudaMemcpyAsync(out, residual, sizeof(float) * tokens * a.hidden, cudaMemcpyDeviceToDevice, stream));
  return CudaStatus();
}

// OPT post-LN normalizes the residual sum after each block, in place.
CudaStatus PostNorm(const DeviceLayerWeights& w, int index, float* residual, int64_t tokens, cudaStream_t stream) {
  if (w.arch.llama() || w.arch.norm_before) return CudaStatus();
  return LayerNormRows(residual, index == 0 ? w.norm1_weight : w.norm2_weight,
                       index == 0 ? w.norm1_bias : w.norm2_bias, w.arch.norm_eps, tokens, w.arch.hidden, residual,
                       stream);
}

CudaStatus Linear(const SolverContext& context, const DeviceLinear& linear, int64_t out, int64_t in, const float* x,
                  int64_t tokens, float* y, bool accumulate = false, Activation activation = Activation::kNone) {
  if (linear.kernel != nullptr) {
    QSHARD_CUDA_RETURN_IF_ERROR(linear.kernel->Apply(context, x, tokens, y, accumulate));
    return BiasActivationRows(y, linear.bias, tokens, out, activation, context.stream());
  }
  return LinearForward(context.blas(), context.stream(), linear.weight, linear.bias, out, in, x, tokens, y, accumulate,
                       activation);
}

// q/k/v of group 0's input, RoPE for LLaMA, causal attention into group 1's input.
CudaStatus AttentionBlock(const SolverContext& context, const DeviceLayerWeights& w, int64_t tokens, const float* x,
                          float* q, float* k, float* v, float* scores, float* rope_cos, float* rope_sin, float* out) {
  const LayerArchitecture& a = w.arch;
  const cudaStream_t stream = context.stream();
  QSHARD_CUDA_RETURN_IF_ERROR(Linear(context, w.q, a.q_width(), a.hidden, x, tokens, q));
  QSHARD_CUDA_RETURN_IF_ERROR(Linear(context, w.k, a.kv_width(), a.hidden, x, tokens, k));
  QSHARD_CUDA_RETURN_IF_ERROR(Linear(context, w.v, a.kv_width(), a.hidden, x, tokens, v));
  if (a.llama()) {
    QSHARD_CUDA_RETURN_IF_ERROR(RopeTable(tokens, a.head_dim, a.rope_theta, rope_cos, rope_sin, stream));
    QSHARD_CUDA_RETURN_IF_ERROR(ApplyRope(q, tokens, a.heads, a.head_dim, rope_cos, rope_sin, stream));
    QSHARD_CUDA_RETURN_IF_ERROR(ApplyRope(k, tokens, a.kv_heads, a.head_dim, rope_cos, rope_sin, stream));
  }
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(a.head_dim)));
  return CausalAttentionOnDevice(context.blas(), stream, AttentionDimsOf(a, tokens), q, k, v, scale, scores, out);
}

// Group 3's input from group 2's: relu(fc1) for OPT, silu(gate)·up for LLaMA.
CudaStatus MlpHidden(const SolverContext& context, const DeviceLayerWeights& w, int64_t tokens, const float* x,
                     float* up, float* out) {
  const LayerArchitecture& a = w.arch;
  if (!a.llama()) return Linear(context, w.up, a.ffn, a.hidden, x, tokens, out, false, Activation::kRelu);
  QSHARD_CUDA_RETURN_IF_ERROR(Linear(context, w.gate, a.ffn, a.hidden, x, tokens, out));
  QSHARD_CUDA_RETURN_IF_ERROR(Linear(context, w.up, a.ffn, a.hidden, x, tokens, up));
  return SiluMultiplyInPlace(out, up, tokens * a.ffn, context.stream());
}

}  // namespace

CudaStatus ValidateDeviceLayer(const DeviceLayerWeights& w) {
  const LayerArchitecture& a = w.arch;
  QSHARD_CUDA_RETURN_IF_ERROR(ValidateLayerArchitecture(a));
  const auto check = [](const DeviceLinear& linear, bool needed, bool biased, const char* name) {
    if (!needed) return linear.weight == nullptr && linear.bias == nullptr && linear.kernel == nullptr
                            ? CudaStatus()
                            : CudaStatus::Error(std::string("device layer: ") + name + " is set but unused");
    if ((linear.weight == nullptr) == (linear.kernel == nullptr))
      return CudaStatus::Error(std::string("device layer: ") + name +
                               (linear.weight == nullptr ? " has no weight" : " has both a weight and a kernel"));
    if ((linear.bias != nullptr) != biased)
      return CudaStatus::Error(std::string("device layer: ") + name +
                               (biased ? " has no bias" : " has a bias the architecture does not"));
    return CudaStatus();
  };
  QSHARD_CUDA_RETURN_IF_ERROR(check(w.q, true, a.attention_bias, "q"));
  QSHARD_CUDA_RETURN_IF_ERROR(check(w.k, true, a.attention_bias, "k"));
  QSHARD_CUDA_RETURN_IF_ERROR(check(w.v, true, a.attention_bias, "v"));
  QSHARD_CUDA_RETURN_IF_ERROR(check(w.o, true, a.attention_bias, "o"));
  QSHARD_CUDA_RETURN_IF_ERROR(check(w.up, true, a.mlp_bias, "up"));
  QSHARD_CUDA_RETURN_IF_ERROR(check(w.gate, a.llama(), a.mlp_bias, "gate"));
  QSHARD_CUDA_RETURN_IF_ERROR(check(w.down, true, a.mlp_bias, "down"));
  if (w.norm1_weight == nullptr || w.norm2_weight == nullptr) return CudaStatus::Error("device layer: a norm weight is missing");
  const bool opt = !a.llama();
  if ((w.norm1_bias != nullptr) != opt || (w.norm2_bias != nullptr) != opt)
    return CudaStatus::Error("device layer: OPT's LayerNorms need biases, LLaMA's RMSNorms have none");
  return CudaStatus();
}

size_t LayerForwardScratch::bytes() const {
  size_t total = q_.bytes() + k_.bytes() + v_.bytes() + up_.bytes() + scores_.bytes() + rope_cos_.bytes() +
                 rope_sin_.bytes();
  for (const DeviceBuffer<float>& g : groups_) total += g.bytes();
  return total;
}

CudaStatus LayerForwardScratch::Reserve(const LayerArchitecture& a, int64_t tokens) {
  const LayerForwardScratchSizes s = LayerForwardScratchSizesOf(a, tokens);
  bool moved = false;
  for (int g = 0; g < kLayerGroupCount; ++g) QSHARD_CUDA_RETURN_IF_ERROR(Grow(groups_[g], s.groups[g], moved));
  if (moved) std::fill(std::begin(computed_), std::end(computed_), 0);  // the group inputs are gone
  QSHARD_CUDA_RETURN_IF_ERROR(Grow(q_, s.q, moved));
  QSHARD_CUDA_RETURN_IF_ERROR(Grow(k_, s.kv, moved));
  QSHARD_CUDA_RETURN_IF_ERROR(Grow(v_, s.kv, moved));
  QSHARD_CUDA_RETURN_IF_ERROR(Grow(up_, s.up, moved));
  QSHARD_CUDA_RETURN_IF_ERROR(Grow(scores_, s.scores, moved));
  QSHARD_CUDA_RETURN_IF_ERROR(Grow(rope_cos_, s.rope, moved));
  return Grow(rope_sin_, s.rope, moved);
}

CudaStatus ComputeGroupInputOnDevice(const SolverContext& context, const DeviceLayerWeights& w, LayerGroup group,
                                     const float* residual, int64_t tokens, LayerForwardScratch& s) {
  QSHARD_CUDA_RETURN_IF_ERROR(CheckCall(context, w, tokens, "ComputeGroupInputOnDevice"));
  QSHARD_CUDA_RETURN_IF_ERROR(s.Reserve(w.arch, tokens));
  const int g = static_cast<int>(group);
  const bool from_previous = group == LayerGroup::kOutInput || group == LayerGroup::kDownInput;
  if (from_previous && s.computed_[g - 1] != tokens)
    return CudaStatus::Error("ComputeGroupInputOnDevice: group " + std::to_string(g) + " reads group " +
                             std::to_string(g - 1) + "'s input, not computed for " + std::to_string(tokens) +
                             " tokens with this scratch");
  const cudaStream_t stream = context.stream();
  float* out = s.groups_[g].get();
  s.computed_[g] = 0;
  switch (group) {
    case LayerGroup::kAttentionInput:
      QSHARD_CUDA_RETURN_IF_ERROR(NormInput(w, 0, residual, tokens, out, stream));
      break;
    case LayerGroup::kOutInput:
      QSHARD_CUDA_RETURN_IF_ERROR(AttentionBlock(context, w, tokens, s.groups_[0].get(), s.q_.get(), s.k_.get(),
                                                 s.v_.get(), s.scores_.get(), s.rope_cos_.get(), s.rope_sin_.get(),
                                                 out));
      break;
    case LayerGroup::kMlpInput:
      QSHARD_CUDA_RETURN_IF_ERROR(NormInput(w, 1, residual, tokens, out, stream));
      break;
    case LayerGroup::kDownInput:
      QSHARD_CUDA_RETURN_IF_ERROR(MlpHidden(context, w, tokens, s.groups_[2].get(), s.up_.get(), out));
      break;
  }
  s.computed_[g] = tokens;
  return CudaStatus();
}

CudaStatus AddGroupOutputOnDevice(const SolverContext& context, const DeviceLayerWeights& w, LayerGroup group,
                                  float* residual, int64_t tokens, LayerForwardScratch& s) {
  QSHARD_CUDA_RETURN_IF_ERROR(CheckCall(context, w, tokens, "AddGroupOutputOnDevice"));
  const int g = static_cast<int>(group);
  const bool attention = group == LayerGroup::kOutInput;
  if (!attention && group != LayerGroup::kDownInput)
    return CudaStatus::Error("AddGroupOutputOnDevice: only groups 1 (o) and 3 (down) add to the residual");
  if (s.computed_[g] != tokens)
    return CudaStatus::Error("AddGroupOutputOnDevice: group " + std::to_string(g) + "'s input was not computed for " +
                             std::to_string(tokens) + " tokens with this scratch");
  const LayerArchitecture& a = w.arch;
  const float* input = s.groups_[g].get();
  if (attention) {
    QSHARD_CUDA_RETURN_IF_ERROR(Linear(context, w.o, a.hidden, a.q_width(), input, tokens, residual, true));
  } else {
    QSHARD_CUDA_RETURN_IF_ERROR(Linear(context, w.down, a.hidden, a.ffn, input, tokens, residual, true));
  }
  return PostNorm(w, attention ? 0 : 1, residual, tokens, context.stream());
}

CudaStatus RunLayerForwardOnDevice(const SolverContext& context, const DeviceLayerWeights& w, const float* hidden_in,
                                   float* hidden_out, int64_t tokens, LayerForwardScratch& s) {
  QSHARD_CUDA_RETURN_IF_ERROR(ValidateDeviceLayer(w));
  const int64_t count = tokens * w.arch.hidden;
  if (hidden_out != hidden_in && hidden_out < hidden_in + count && hidden_in < hidden_out + count)
    return CudaStatus::Error("RunLayerForwardOnDevice: hidden_in and hidden_out overlap without being equal");
  QSHARD_CUDA_RETURN_IF_ERROR(CheckCall(context, w, tokens, "RunLayerForwardOnDevice"));
  if (hidden_out != hidden_in) {
    QSHARD_CUDA_TRY(cudaMemcpyAsync(hidden_out, hidden_in, sizeof(float) * count, cudaMemcpyDeviceToDevice,
                                    context.stream()));
  }
  // The attention block, then the MLP block, each ending in its output added to the residual.
  for (const LayerGroup input : {LayerGroup::kAttentionInput, LayerGroup::kMlpInput}) {
    const LayerGroup inner = static_cast<LayerGroup>(static_cast<int>(input) + 1);
    QSHARD_CUDA_RETURN_IF_ERROR(ComputeGroupInputOnDevice(context, w, input, hidden_out, tokens, s));
    QSHARD_CUDA_RETURN_IF_ERROR(ComputeGroupInputOnDevice(context, w, inner, hidden_out, tokens, s));
    QSHARD_CUDA_RETURN_IF_ERROR(AddGroupOutputOnDevice(context, w, inner, hidden_out, tokens, s));
  }
  return CudaStatus();
}

CudaStatus RunLayerCachedOnDevice(const SolverContext& context, const DeviceLayerWeights& w, float* hidden,
                                  int64_t tokens, int64_t first_position, float* k_cache, float* v_cache,
                                  LayerForwardScratch& s) {
  QSHARD_CUDA_RETURN_IF_ERROR(CheckCall(context, w, tokens, "RunLayerCachedOnDevice"));
  if (first_position < 0 || k_cache == nullptr || v_cache == nullptr)
    return CudaStatus::Error("RunLayerCachedOnDevice: a negative position or no cache");
  QSHARD_CUDA_RETURN_IF_ERROR(s.Reserve(w.arch, tokens));
  const LayerArchitecture& a = w.arch;
  const cudaStream_t stream = context.stream();
  std::fill(std::begin(s.computed_), std::end(s.computed_), 0);
  float* x = s.groups_[0].get();
  float* k = k_cache + first_position * a.kv_width();
  float* v = v_cache + first_position * a.kv_width();
  QSHARD_CUDA_RETURN_IF_ERROR(NormInput(w, 0, hidden, tokens, x, stream));
  QSHARD_CUDA_RETURN_IF_ERROR(Linear(context, w.q, a.q_width(), a.hidden, x, tokens, s.q_.get()));
  QSHARD_CUDA_RETURN_IF_ERROR(Linear(context, w.k, a.kv_width(), a.hidden, x, tokens, k));
  QSHARD_CUDA_RETURN_IF_ERROR(Linear(context, w.v, a.kv_width(), a.hidden, x, tokens, v));
  if (a.llama()) {
    float* cos = s.rope_cos_.get();
    float* sin = s.rope_sin_.get();
    QSHARD_CUDA_RETURN_IF_ERROR(RopeTable(tokens, first_position, a.head_dim, a.rope_theta, cos, sin, stream));
    QSHARD_CUDA_RETURN_IF_ERROR(ApplyRope(s.q_.get(), tokens, a.heads, a.head_dim, cos, sin, stream));
    QSHARD_CUDA_RETURN_IF_ERROR(ApplyRope(k, tokens, a.kv_heads, a.head_dim, cos, sin, stream));
  }
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(a.head_dim)));
  QSHARD_CUDA_RETURN_IF_ERROR(CachedAttentionOnDevice(stream, AttentionDimsOf(a, tokens), first_position, s.q_.get(), k_cache,
                                                      v_cache, scale, s.groups_[1].get()));
  s.computed_[0] = s.computed_[1] = tokens;
  QSHARD_CUDA_RETURN_IF_ERROR(AddGroupOutputOnDevice(context, w, LayerGroup::kOutInput, hidden, tokens, s));
  QSHARD_CUDA_RETURN_IF_ERROR(ComputeGroupInputOnDevice(context, w, LayerGroup::kMlpInput, hidden, tokens, s));
  QSHARD_CUDA_RETURN_IF_ERROR(ComputeGroupInputOnDevice(context, w, LayerGroup::kDownInput, hidden, tokens, s));
  return AddGroupOutputOnDevice(context, w, LayerGroup::kDownInput, hidden, tokens, s);
}

double LayerForwardFlops(const LayerArchitecture& a, int64_t tokens) {
  const double in_out = 2.0 * a.hidden * a.q_width() + 2.0 * a.hidden * a.kv_width() +
                        (a.llama() ? 3.0 : 2.0) * a.hidden * a.ffn;
  return 2.0 * tokens * in_out + CausalAttentionFlops(AttentionDimsOf(a, tokens));
}

}  // namespace qshard::gpu
