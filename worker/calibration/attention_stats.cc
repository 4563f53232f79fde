#include "worker/calibration/attention_stats.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "core/thread_pool.h"
#include "kernels/cpu/blas.h"
#include "worker/calibration/statistics_device.h"

namespace qshard {
namespace {

std::vector<HessianSum> EmptySums(int64_t count, int64_t dim) { return std::vector<HessianSum>(count, HessianSum(dim)); }

absl::Status MergeSums(std::vector<HessianSum>& into, const std::vector<HessianSum>& from, const char* field) {
  if (into.size() != from.size())
    return absl::InvalidArgumentError(
        absl::StrCat("attention stats ", field, ": ", from.size(), " heads, expected ", into.size()));
  for (size_t i = 0; i < into.size(); ++i) {
    absl::Status status = into[i].Merge(from[i]);
    if (!status.ok()) return absl::InvalidArgumentError(absl::StrCat("attention stats ", field, "[", i, "]: ", status.message()));
  }
  return absl::OkStatus();
}

// Copies head `head`'s slice [seq, head_dim] of window `window` out of x [batch*seq, heads*head_dim].
void GatherHead(const Tensor& x, int64_t window, int64_t seq, int64_t head, int64_t head_dim, float* out) {
  for (int64_t t = 0; t < seq; ++t) {
    const float* row = x.row(window * seq + t) + head * head_dim;
    std::copy(row, row + head_dim, out + t * head_dim);
  }
}

// Rows of a head's probabilities per product of CausalProduct: small enough that the blocks skip
// most of the zeros, large enough for the BLAS to run near its rate (one thread, seq 512,
// hidden 128: 0.43 ms a head against 0.73 for the whole product).
constexpr int64_t kCausalRows = 64;

// A·X for one head's probabilities A [seq, seq], zero above the diagonal, and X [seq, hidden]:
// row blocks, each over the keys up to its last row, about half the whole product's multiply-adds.
void CausalProduct(const float* a, int64_t seq, const float* x, int64_t hidden, float* out) {
  for (int64_t r = 0; r < seq; r += kCausalRows) {
    const int64_t rows = std::min(kCausalRows, seq - r);
    kernels::GemmBlock(rows, hidden, r + rows, a + r * seq, seq, x, out + r * hidden);
  }
}

}  // namespace

uint64_t AttentionWindowBytes(const ModelConfig& config, int64_t seq) {
  return sizeof(float) * static_cast<uint64_t>(seq) *
         (config.hidden_size + (config.num_heads + config.num_kv_heads) * config.head_dim);
}

AttentionStats AttentionStats::For(const ModelConfig& config, int64_t seq) {
  AttentionStats stats;
  stats.heads = config.num_heads;
  stats.kv_heads = config.num_kv_heads;
  stats.head_dim = config.head_dim;
  stats.hidden = config.hidden_size;
  stats.seq = seq;
  stats.values = EmptySums(stats.kv_heads, stats.hidden);
  stats.queries = EmptySums(stats.kv_heads, stats.head_dim);
  stats.keys = EmptySums(stats.kv_heads, stats.head_dim);
  return stats;
}

absl::Status AttentionStats::Merge(const AttentionStats& other) {
  if (other.heads != heads || other.kv_heads != kv_heads || other.head_dim != head_dim || other.hidden != hidden ||
      other.seq != seq)
    return absl::InvalidArgumentError(absl::StrCat(
        "attention stats: shapes (heads ", other.heads, ", kv_heads ", other.kv_heads, ", head_dim ", other.head_dim,
        ", hidden ", other.hidden, ", seq ", other.seq, ") do not match (", heads, ", ", kv_heads, ", ", head_dim,
        ", ", hidden, ", ", seq, ")"));
  if (absl::Status s = MergeSums(values, other.values, "values"); !s.ok()) return s;
  if (absl::Status s = MergeSums(queries, other.queries, "queries"); !s.ok()) return s;
  return MergeSums(keys, other.keys, "keys");
}

void AttentionStatsCollector::OnLinearInput(int layer, const std::string& linear, const Tensor& x) {
  if (layer == layer_ && linear == "self_attn.q_proj") input_ = x;
}

void AttentionStatsCollector::OnAttention(int layer, const Tensor& probs, const Tensor& q, const Tensor& k,
                                          int64_t batch, int64_t seq) {
  // Hooks cannot fail: a batch without its attention input, or with windows of another length,
  // is skipped; an empty result is reported by the method that needs it.
  if (layer != layer_ || input_.rows() != batch * seq || (!stats_.values.empty() && seq != stats_.seq)) return;
  if (stats_.values.empty()) {
    stats_ = AttentionStats::For(config_, seq);
    workspaces_.assign(stats_.kv_heads, HessianWorkspace{});
  }
  const int64_t heads = stats_.heads, group = heads / stats_.kv_heads;
  const int64_t hidden = stats_.hidden, head_dim = stats_.head_dim;
  // KV head g's sums take the terms of its query heads only, so the groups are summed apart;
  // inside each, window by window and heads in order: every sum receives its terms in window
  // order whatever the batching or the threads.
  const auto kv_group = [&](int64_t g) {
    HessianWorkspace& workspace = workspaces_[g];
    std::vector<float> mixed(seq * hidden), slice(seq * head_dim);
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t j = 0; j < group; ++j) {
        CausalProduct(probs.data() + (b * heads + g * group + j) * seq * seq, seq, input_.row(b * seq), hidden,
                      mixed.data());
        stats_.values[g].AddWindowsToUpper(mixed.data(), seq, seq, workspace);
        GatherHead(q, b, seq, g * group + j, head_dim, slice.data());
        stats_.queries[g].AddWindowsToUpper(slice.data(), seq, seq, workspace);
      }
      GatherHead(k, b, seq, g, head_dim, slice.data());
      stats_.keys[g].AddWindowsToUpper(slice.data(), seq, seq, workspace);
    }
  };
  if (pool_ == nullptr || pool_->threads() == 1) {
    for (int64_t g = 0; g < stats_.kv_heads; ++g) kv_group(g);
  } else {
    const kernels::SingleThreadedBlas one_blas_thread_per_group;
    pool_->ParallelFor(stats_.kv_heads, kv_group);
  }
}

AttentionStatsCollector::AttentionStatsCollector(int layer, const ModelConfig& config, ThreadPool* pool,
                                                 Tensor* probabilities, StatisticsDevice* device)
    : layer_(layer), config_(config), pool_(pool), shared_probs_(probabilities), device_(device) {}
AttentionStatsCollector::~AttentionStatsCollector() = default;
AttentionStatsCollector::AttentionStatsCollector(AttentionStatsCollector&&) noexcept = default;

absl::StatusOr<OffHostAttentionStats*> AttentionStatsCollector::DeviceStats(int64_t seq) {
  if (device_ == nullptr) return absl::InternalError("attention statistics: device statistics without a device");
  if (device_stats_ == nullptr) {
    QSHARD_ASSIGN_OR_RETURN(device_stats_, device_->NewAttentionStats(config_, seq));
    device_seq_ = seq;
  }
  if (device_seq_ != seq)
    return absl::InternalError(absl::StrCat("attention statistics: made for windows of ", device_seq_,
                                            " tokens, asked for ", seq));
  return device_stats_.get();
}

AttentionStats AttentionStatsCollector::Take() {
  if (device_stats_ != nullptr) {  // a device's sums come back whole (both triangles)
    AttentionStats host = AttentionStats::For(config_, device_seq_);
    if (status_.ok()) status_ = device_stats_->Download(host);
    device_stats_.reset();
    return status_.ok() ? std::move(host) : AttentionStats();
  }
  for (std::vector<HessianSum>* sums : {&stats_.values, &stats_.queries, &stats_.keys})
    for (HessianSum& sum : *sums) sum.MirrorUpper(pool_);
  AttentionStats out = std::move(stats_);
  own_probs_ = Tensor();
  workspaces_.clear();
  stats_ = AttentionStats();
  input_ = Tensor();
  return out;
}

// Derivation. RoPE rotates head vectors by position: q̃_i = R_i q_i, k̃_j = R_j k_j with
// R_p = [[cos, −sin], [sin, cos]] (diagonal blocks over the rotate_half pairs (f, f + d/2) at
// angle p·θ^(−2f/d)). A change Δq_i = ΔW_Q x_i of the unrotated query changes the score with
// key j by Δs_ij = (R_i Δq_i)ᵀ k̃_j, so Σ_j Δs_ij² = Δq_iᵀ R_iᵀ C_K R_i Δq_i with C_K = Σ_j k̃_j k̃_jᵀ
// the covariance of the rotated keys. aespa's Kronecker approximation decouples the query's
// position from the data, giving the weighting mean_p R_pᵀ C_K R_p (the reference's
// `(rot_emb.T @ cov_out @ rot_emb).mean(0)`); note this is not the covariance of unrotated
// keys, which would rotate each key by its own position instead of the query's.
//
// Column a of R_p has two entries: a < d/2 (frequency f = a): cos at row f, sin at row f + d/2;
// a ≥ d/2 (f = a − d/2): −sin at row f, cos at row a. So
//   (mean_p R_pᵀ C R_p)_ab = Σ_{u,v} mean_p[coef_u(a, p) · coef_v(b, p)] · C[row_u(a), row_v(b)],
// and the means of products of cos/sin at two frequencies are shared by every head.
std::vector<double> PullBackThroughRope(const std::vector<double>& c, int64_t head_dim, double theta,
                                        int64_t seq) {
  const int64_t d = head_dim, half = d / 2;
  std::vector<double> inv_freq(half);
  for (int64_t f = 0; f < half; ++f) inv_freq[f] = 1.0 / std::pow(theta, static_cast<double>(2 * f) / d);
  // means[kind_a][kind_b][fa * half + fb], kind 0 = cos, 1 = sin.
  std::vector<double> means[2][2];
  for (auto& row : means)
    for (auto& m : row) m.assign(half * half, 0.0);
  std::vector<double> trig[2] = {std::vector<double>(half), std::vector<double>(half)};
  for (int64_t p = 0; p < seq; ++p) {
    for (int64_t f = 0; f < half; ++f) {
      trig[0][f] = std::cos(p * inv_freq[f]);
      trig[1][f] = std::sin(p * inv_freq[f]);
    }
    for (int ka = 0; ka < 2; ++ka)
      for (int kb = 0; kb < 2; ++kb)
        for (int64_t fa = 0; fa < half; ++fa)
          for (int64_t fb = 0; fb < half; ++fb) means[ka][kb][fa * half + fb] += trig[ka][fa] * trig[kb][fb];
  }
  for (auto& row : means)
    for (auto& m : row)
      for (double& v : m) v /= static_cast<double>(seq);

  struct Entry {
    int64_t row;
    int kind;
    double sign;
  };
  const auto column = [&](int64_t a, int u) -> Entry {
    const int64_t f = a < half ? a : a - half;
    if (a < half) return u == 0 ? Entry{f, 0, 1.0} : Entry{f + half, 1, 1.0};
    return u == 0 ? Entry{f, 1, -1.0} : Entry{a, 0, 1.0};
  };
  std::vector<double> g(d * d, 0.0);
  for (int64_t a = 0; a < d; ++a) {
    const int64_t fa = a < half ? a : a - half;
    for (int64_t b = 0; b < d; ++b) {
      const int64_t fb = b < half ? b : b - half;
      double sum = 0.0;
      for (int u = 0; u < 2; ++u) {
        const Entry ea = column(a, u);
        for (int v = 0; v < 2; ++v) {
          const Entry eb = column(b, v);
          sum += ea.sign * eb.sign * means[ea.kind][eb.kind][fa * half + fb] * c[ea.row * d + eb.row];
        }
      }
      g[a * d + b] = sum;
    }
  }
  return g;
}

QueryKeyWeightings CrossWeightings(const AttentionStats& stats, const ModelConfig& config) {
  const bool rope = config.arch == Architecture::kLlama;
  const auto weighting = [&](const HessianSum& sum) {
    std::vector<double> c = sum.Normalized();
    return rope ? PullBackThroughRope(c, stats.head_dim, config.rope_theta, stats.seq) : c;
  };
  QueryKeyWeightings out;
  const int64_t group = stats.heads / stats.kv_heads;
  std::vector<std::vector<double>> from_keys;
  for (const HessianSum& k : stats.keys) from_keys.push_back(weighting(k));
  for (int64_t h = 0; h < stats.heads; ++h) out.query.push_back(from_keys[h / group]);  // broadcast over the group
  for (const HessianSum& q : stats.queries) out.key.push_back(weighting(q));          // already the group mean
  return out;
}

}  // namespace qshard
