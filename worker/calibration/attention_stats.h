// aespa's attention-aware calibration statistics of one decoder layer (anchors.md §1.2):
// the value projection's Hessian input Σ (A_h X)ᵀ(A_h X) and the query/key output
// covariances Σ q qᵀ, Σ k kᵀ, kept as un-normalized fp64 sums + token counts (so partial sums
// add exactly), and the matrices aespa solves with, derived from them once at the end.
//
// Everything is kept per key/value head: under grouped-query attention the query heads of a
// group are summed into their group's sum and the token count grows by the group size, so
// 2·sum/tokens is the mean over the group (the reference's `.mean(1)` over a KV group).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/model_config.h"
#include "worker/calibration/hessian.h"
#include "worker/model/decoder_model.h"

namespace qshard {

struct AttentionStats {
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
  int64_t hidden = 0;
  int64_t seq = 0;  // tokens per window (positions 0..seq-1): the RoPE pull-back averages over them
  // [kv_heads], dim hidden: Σ over the group's heads h and tokens of row t of A_h X, where X is
  // the window's attention input [seq, hidden] and A_h its attention probabilities.
  std::vector<HessianSum> values;
  // [kv_heads], dim head_dim: Σ q qᵀ over the group's query heads (post-RoPE, unscaled).
  std::vector<HessianSum> queries;
  // [kv_heads], dim head_dim: Σ k kᵀ (post-RoPE).
  std::vector<HessianSum> keys;

  // Empty sums shaped for `config` (windows of `seq` tokens).
  static AttentionStats For(const ModelConfig& config, int64_t seq);
  // Adds another partial (same shapes): the reduction across shards, in window order.
  absl::Status Merge(const AttentionStats& other);
};

// One window's attention input x [seq, hidden] and rotated q [seq, heads·head_dim] and k [seq,
// kv_heads·head_dim] in float32: what a device that takes the values' sums in slices of heads keeps
// in host memory per window for its later slices (worker/cuda/cuda_attention_stats.h; 302 MB at
// OPT-175B with 2048 tokens), and what `qshard plan` counts for them.
uint64_t AttentionWindowBytes(const ModelConfig& config, int64_t seq);

class OffHostAttentionStats;
class StatisticsDevice;

// Accumulates AttentionStats for one layer from DecoderModel::RunLayer. It keeps a copy of the
// batch's attention input (the q/k/v projections' input) until the attention hook fires. Given
// a StatisticsDevice, the statistics accumulate there instead, fed by the device's forward pass
// (DeviceStats), and come back to the host when taken.
class AttentionStatsCollector : public LayerObserver {
 public:
  // With a pool, a batch's KV-head groups are summed on its threads (one BLAS thread each).
  // `probabilities`, if given, is the batches' probabilities scratch, shared with collectors
  // that run one after another (a worker's shards): one allocation of batch·heads·seq² floats
  // for all of them (67 MB for 8 windows of 512 tokens and 8 heads), not one each.
  AttentionStatsCollector(int layer, const ModelConfig& config, ThreadPool* pool = nullptr,
                          Tensor* probabilities = nullptr, StatisticsDevice* device = nullptr);
  ~AttentionStatsCollector() override;
  AttentionStatsCollector(AttentionStatsCollector&&) noexcept;

  void OnLinearInput(int layer, const std::string& linear, const Tensor& x) override;
  bool WantsAttention(int layer) const override { return layer == layer_; }
  void OnAttention(int layer, const Tensor& probs, const Tensor& q, const Tensor& k, int64_t batch,
                   int64_t seq) override;
  Tensor* ProbabilitiesScratch(int layer) override {
    if (layer != layer_) return nullptr;
    return shared_probs_ != nullptr ? shared_probs_ : &own_probs_;
  }

  // With a device: its statistics for windows of `seq` tokens (made on first use), for the
  // device's forward pass to add each window to.
  absl::StatusOr<OffHostAttentionStats*> DeviceStats(int64_t seq);
  // The first error of a device's download; Take's result must not be used when it is not OK.
  const absl::Status& status() const { return status_; }

  // The sums so far (empty, with zero shapes, if no window was seen); the collector restarts.
  AttentionStats Take();

 private:
  int layer_;
  ModelConfig config_;
  ThreadPool* pool_;
  Tensor input_;  // the current batch's attention input [batch*seq, hidden]
  AttentionStats stats_;  // upper triangles only until Take mirrors them
  std::vector<HessianWorkspace> workspaces_;  // one per KV head: its sums' product scratch
  Tensor* shared_probs_;  // the shared probabilities scratch, or null
  Tensor own_probs_;      // the batches' probabilities without a shared scratch, until Take
  StatisticsDevice* device_;
  std::unique_ptr<OffHostAttentionStats> device_stats_;  // until Take downloads it
  int64_t device_seq_ = 0;
  absl::Status status_;
};

// The output weightings aespa's query/key losses tr(G·ΔW·H·ΔWᵀ) use per head, normalized like
// the Hessians (2·sum/tokens), [head_dim, head_dim] row-major each. Cross-assigned: W_Q's
// weighting is the key covariance, W_K's the query covariance (anchors.md §1.2, Eq. 21–22).
struct QueryKeyWeightings {
  std::vector<std::vector<double>> query;  // [heads]: G for the rows of W_Q of query head h
  std::vector<std::vector<double>> key;    // [kv_heads]: G for the rows of W_K of kv head g
};

// With RoPE (LLaMA) the covariances are of rotated vectors; the loss is on the unrotated
// projection rows, so each is pulled back through the rotation of the query position:
// G = mean_p R_pᵀ C R_p over window positions p. OPT: G = C.
QueryKeyWeightings CrossWeightings(const AttentionStats& stats, const ModelConfig& config);

// mean_p R_pᵀ C R_p, p = 0..seq-1, for C [head_dim²] and HF rotate_half RoPE with base theta.
std::vector<double> PullBackThroughRope(const std::vector<double>& c, int64_t head_dim, double theta,
                                        int64_t seq);

}  // namespace qshard
