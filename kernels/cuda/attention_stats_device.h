// aespa's attention statistics of one decoder layer on the device, the counterpart of
// worker/calibration/attention_stats.h's collector: per key/value head g, float64 sums of
// Σ (A_h X)ᵀ(A_h X) over its query heads h, Σ q_h q_hᵀ and Σ k_g k_gᵀ, from a window's attention
// input X and its q/k after RoPE where the forward pass left them (LayerForwardScratch): no host
// copy of the probabilities or the inputs. Per window and query head: the scores scale·Q_h K_gᵀ
// (one cublasSgemm, T × T), the causal softmax (attention_device.h's kernel), A_h X by
// cublasStrmm (the probabilities are lower triangular: half a GEMM's work), then
// DeviceHessianSum's float32 syrk into a scratch shared by all heads and its one-writer float64
// add; each sum takes its terms window by window, the group's heads in order, as on the CPU. The
// values' sums may be held for a slice of the key/value heads at a time (KvHeadRange).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/device_memory_bytes.h"  // AttentionStatsDims, DeviceAttentionStatsBytes
#include "kernels/cuda/hessian_device.h"
#include "kernels/cuda/solver_context.h"

namespace qshard::gpu {

// The key/value heads whose values' sums a DeviceAttentionStats holds: [first, first + count).
// The values' sums are the bulk (8·hidden² bytes per head: 116 GB at OPT-175B); a device too small
// for all of them takes them in slices, one pass over the windows per slice (the glue,
// worker/cuda/cuda_attention_stats.cc). Each head's sum takes the same terms in the same order
// whatever the slicing, so a slice's sums are the bytes the whole would have had.
struct KvHeadRange {
  int64_t first = 0;
  int64_t count = 0;
};

// Which sums a window goes into: the first pass over the windows adds to every head's queries' and
// keys' sums and the held values' sums; each later pass (a later slice of heads) to the held
// values' sums only.
enum class WindowSums { kAll, kValuesOnly };

class DeviceAttentionStats {
 public:
  // Allocates and zeroes every key/value head's queries' and keys' sums, the values' sums of
  // `values` and the product scratch (the window buffers come with the first window).
  CudaStatus Reset(const AttentionStatsDims& dims, KvHeadRange values, cudaStream_t stream);
  // Every head's values' sums: Reset(dims, {0, dims.kv_heads}, stream).
  CudaStatus Reset(const AttentionStatsDims& dims, cudaStream_t stream);
  // Frees the values' sums held and allocates zeroed ones for `values`; the queries' and keys'
  // sums stay.
  CudaStatus ResetValues(KvHeadRange values, cudaStream_t stream);
  // Adds one window of `tokens` tokens (device, row-major): x [tokens, hidden], q [tokens,
  // heads·head_dim], k [tokens, kv_heads·head_dim], positions 0..tokens−1 (causal).
  CudaStatus AddWindow(const SolverContext& context, const float* x, const float* q, const float* k, int64_t tokens,
                       WindowSums sums = WindowSums::kAll);

  const AttentionStatsDims& dims() const { return dims_; }
  const KvHeadRange& value_heads() const { return value_heads_; }
  // Key/value head g's sums: dims hidden (g inside value_heads()), head_dim, head_dim.
  const DeviceHessianSum& values(int64_t g) const { return values_[g - value_heads_.first]; }
  const DeviceHessianSum& queries(int64_t g) const { return queries_[g]; }
  const DeviceHessianSum& keys(int64_t g) const { return keys_[g]; }

 private:
  AttentionStatsDims dims_;
  KvHeadRange value_heads_;
  std::vector<DeviceHessianSum> values_;  // value_heads_.count of them
  std::vector<DeviceHessianSum> queries_, keys_;
  DeviceBuffer<float> product_;        // [hidden²]: one head's window product
  DeviceBuffer<float> head_product_;   // [head_dim²]
  DeviceBuffer<float> probabilities_;  // [T²]: one head's, row-major [query, key]
  DeviceBuffer<float> mixed_;          // [T, hidden]: A_h X
  DeviceBuffer<float> slice_;          // [T, head_dim]: one head of q or k, contiguous
};

}  // namespace qshard::gpu
