#include "worker/device/cuda_device_memory.h"

#include <algorithm>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "worker/calibration/attention_stats.h"

namespace qshard {
namespace {

// Key/value heads per slice when at most `fitting` (≥ 1) of `all` fit at once: the fewest slices,
// as even as they go (96 heads with 56 fitting: two slices of 48).
int64_t EvenSlice(int64_t all, int64_t fitting) {
  const int64_t slices = (all + fitting - 1) / fitting;
  return (all + slices - 1) / slices;
}

}  // namespace

absl::StatusOr<gpu::LayerArchitecture> LayerArchitectureOf(const ModelConfig& c) {
  const bool llama = c.arch == Architecture::kLlama;
  gpu::LayerArchitecture a;
  a.kind = llama ? gpu::LayerKind::kLlama : gpu::LayerKind::kOpt;
  a.hidden = c.hidden_size;
  a.ffn = c.intermediate_size;
  a.heads = c.num_heads;
  a.kv_heads = c.num_kv_heads;
  a.head_dim = c.head_dim;
  a.norm_eps = llama ? c.rms_norm_eps : c.layer_norm_eps;
  a.norm_before = llama || c.do_layer_norm_before;
  a.rope_theta = c.rope_theta;
  a.attention_bias = llama ? c.attention_bias : c.enable_bias;
  a.mlp_bias = llama ? c.mlp_bias : c.enable_bias;
  if (const gpu::CudaStatus valid = gpu::ValidateLayerArchitecture(a); !valid.ok())
    return absl::UnimplementedError(
        absl::StrCat("the device forward pass cannot compute this model's layers: ", valid.message()));
  return a;
}

gpu::AttentionStatsDims AttentionStatsDimsOf(const ModelConfig& c) {
  return {c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim};
}

size_t AttentionStatsDeviceBytes(const ModelConfig& config, int64_t seq, int64_t value_heads) {
  const gpu::AttentionStatsDims d = AttentionStatsDimsOf(config);
  const size_t window = value_heads < d.kv_heads ? AttentionWindowBytes(config, seq) : 0;
  return gpu::DeviceAttentionStatsBytes(d, seq, value_heads) + window;
}

size_t AttentionStatsDeviceBytes(const ModelConfig& config, int64_t seq) {
  return AttentionStatsDeviceBytes(config, seq, config.num_kv_heads);
}

size_t LayerResidentBytes(const ModelConfig& config, int64_t seqlen) {
  const LayerSpec spec = DecoderLayerSpec(config);
  size_t weights = 0;
  for (const LinearSpec& l : spec.linears)
    weights += 4 * (static_cast<size_t>(l.in_features * l.out_features) + (l.has_bias ? l.out_features : 0));
  for (const NormSpec& n : spec.norms) weights += 4 * static_cast<size_t>(n.size);
  const auto arch = LayerArchitectureOf(config);
  const size_t scratch = arch.ok() ? gpu::LayerForwardScratchBytes(*arch, seqlen) : 0;
  const size_t staging = 4 * static_cast<size_t>(seqlen * config.hidden_size);
  return weights + scratch + staging;
}

size_t LayerDeviceBytes(const ModelConfig& config, int64_t seqlen, const ForwardStatistics& statistics,
                        int64_t value_heads) {
  size_t solve = 0;
  for (const LinearSpec& l : DecoderLayerSpec(config).linears) {
    const size_t in = l.in_features, out = l.out_features;
    // The sum, the float64 factor and the float32 coefficients; then the sum, the coefficients
    // and the sweep's buffers (docs/cuda.md, "Calibration statistics and GPTQ on the device").
    solve = std::max({solve, 20 * in * in, 12 * in * in + 16 * in * out});
  }
  // A group's sum and its window product's scratch (worker/cuda/cuda_hessian_sum.h), per group in order.
  const int64_t widths[] = {config.hidden_size, config.num_heads * config.head_dim, config.hidden_size,
                            config.intermediate_size};
  size_t sums = 0;
  for (size_t g = 0; g < std::size(widths); ++g) {
    size_t group = 12 * static_cast<size_t>(widths[g]) * static_cast<size_t>(widths[g]);
    if (g == 0 && statistics.attention) group += AttentionStatsDeviceBytes(config, seqlen, value_heads);
    sums = statistics.all_groups ? sums + group : std::max(sums, group);
  }
  return LayerResidentBytes(config, seqlen) + std::max(sums, solve);
}

size_t LayerDeviceBytes(const ModelConfig& config, int64_t seqlen, const ForwardStatistics& statistics) {
  return LayerDeviceBytes(config, seqlen, statistics, config.num_kv_heads);
}

absl::StatusOr<int64_t> ValueHeadsPerPass(const ModelConfig& config, int64_t seqlen,
                                          const ForwardStatistics& statistics, int index, size_t free) {
  const int64_t all = config.num_kv_heads;
  if (!statistics.attention || LayerDeviceBytes(config, seqlen, statistics) <= free) return all;
  // The bound grows with the heads held at once. Room for the slices' even size, not for the most
  // that fit, leaves the rest to hidden states at no extra slice.
  for (int64_t heads = all - 1; heads > 0; --heads)
    if (LayerDeviceBytes(config, seqlen, statistics, heads) <= free) return EvenSlice(all, heads);
  // Not even one head's beside the layer's largest solve or sums: refused before any work.
  return absl::ResourceExhaustedError(absl::StrFormat(
      "aespa on cuda:%d: a layer needs %.2f GB of device memory under %s besides the calibration hidden states "
      "with one key/value head's attention statistics at a time (a %d × %d float64 sum per head; all %d heads' at "
      "once would take %.2f GB), and %.2f GB are free: use --device cpu, or a device with more memory",
      index, LayerDeviceBytes(config, seqlen, statistics, 1) / 1e9,
      statistics.all_groups ? "parallel propagation (every group's statistics at once)"
                            : "sequential propagation (one group's statistics at a time)",
      config.hidden_size, config.hidden_size, all, AttentionStatsDeviceBytes(config, seqlen) / 1e9, free / 1e9));
}

absl::StatusOr<DeviceMemoryPlan> PlanDeviceMemory(const ModelConfig& config, int64_t seqlen,
                                                  const ForwardStatistics& statistics, int index, size_t free) {
  const absl::StatusOr<int64_t> heads = ValueHeadsPerPass(config, seqlen, statistics, index, free);
  if (!heads.ok()) return heads.status();
  DeviceMemoryPlan plan;
  plan.free_bytes = free;
  plan.layer_bytes = LayerDeviceBytes(config, seqlen, statistics, *heads);
  plan.kv_heads = statistics.attention ? config.num_kv_heads : 0;
  plan.value_heads = *heads;
  return plan;
}

gpu::AdaRoundDeviceProblem AespaRoundingShape(const ModelConfig& config, const LinearSpec& linear, int bits) {
  gpu::AdaRoundDeviceProblem p;
  p.rows = linear.out_features;
  p.cols = linear.in_features;
  p.max_code = (1 << bits) - 1;
  const bool query = linear.name == "self_attn.q_proj", key = linear.name == "self_attn.k_proj";
  p.hessians.assign(linear.name == "self_attn.v_proj" ? config.num_kv_heads : 1, nullptr);
  if (query || key) p.weightings.assign(query ? config.num_heads : config.num_kv_heads, nullptr);
  return p;
}

std::string AdaRoundRefusal(const gpu::AdaRoundDeviceProblem& p, int index, size_t free) {
  const int64_t heads = static_cast<int64_t>(p.weightings.size()), blocks = static_cast<int64_t>(p.hessians.size());
  return absl::StrFormat(
      "AdaRound needs %.2f GB on cuda:%d for one %s (%d of a %d × %d weight's rows, %d Hessian block(s) of %d × %d, "
      "%d output weighting(s)) and %.2f GB are free: use --device cpu, or a device with more memory",
      gpu::AdaRoundSliceBytes(p, {0, 1}) / 1e9, index, heads > 0 ? "head" : "Hessian block",
      p.rows / gpu::AdaRoundUnits(p), p.rows, p.cols, blocks, p.cols, p.cols, heads, free / 1e9);
}

}  // namespace qshard
