#include "worker/cuda/cuda_attention_stats.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status.h"
#include "kernels/cuda/attention_stats_device.h"
#include "kernels/cuda/device_buffer.h"
#include "worker/calibration/attention_stats.h"
#include "worker/cuda/cuda_hessian_sum.h"
#include "worker/cuda/cuda_status_adapter.h"

namespace qshard {
namespace {

constexpr char kWhat[] = "attention statistics on the device";

class CudaAttentionStats final : public OffHostAttentionStats {
 public:
  CudaAttentionStats(std::shared_ptr<CudaSession> session, int64_t seq) : session_(std::move(session)), seq_(seq) {}
  ~CudaAttentionStats() override { session_->MakeCurrent(); }  // the buffers are freed on their device

  absl::Status Reset(const ModelConfig& config, int64_t value_heads) {
    QSHARD_ASSIGN_OR_RETURN(auto lock, session_->Enter());
    const int64_t per_slice = std::min(value_heads, config.num_kv_heads);
    const size_t needed = AttentionStatsDeviceBytes(config, seq_, per_slice);
    QSHARD_ASSIGN_OR_RETURN(const size_t free, session_->FreeBytes(kWhat));
    if (needed > free)
      return session_->WithBudget(absl::ResourceExhaustedError(absl::StrFormat(
          "aespa's attention statistics need %.2f GB on cuda:%d (the values' sums of %d of %d key/value heads at a "
          "time, a %d × %d float64 sum each) and %.2f GB are free: use --device cpu, or a device with more memory",
          needed / 1e9, session_->index(), per_slice, config.num_kv_heads, config.hidden_size, config.hidden_size,
          free / 1e9)));
    dims_ = AttentionStatsDimsOf(config);
    window_floats_ = AttentionWindowBytes(config, seq_) / sizeof(float);
    per_slice_ = per_slice;
    return FromCudaStatus(stats_.Reset(dims_, {0, per_slice_}, session_->stream()), kWhat);
  }

  absl::Status AddResidentWindow(const float* x, const float* q, const float* k) override {
    QSHARD_ASSIGN_OR_RETURN(auto lock, session_->Enter());
    QSHARD_RETURN_IF_ERROR(FromCudaStatus(stats_.AddWindow(session_->context(), x, q, k, seq_), kWhat));
    if (per_slice_ == dims_.kv_heads) return absl::OkStatus();
    // Kept for the later slices' passes (Download).
    std::vector<float>& kept = kept_.emplace_back(window_floats_);
    const size_t x_floats = seq_ * dims_.hidden, q_floats = seq_ * dims_.heads * dims_.head_dim;
    QSHARD_RETURN_IF_ERROR(
        session_->Copy(kept.data(), x, x_floats * sizeof(float), cudaMemcpyDeviceToHost, kWhat));
    QSHARD_RETURN_IF_ERROR(
        session_->Copy(kept.data() + x_floats, q, q_floats * sizeof(float), cudaMemcpyDeviceToHost, kWhat));
    return session_->Copy(kept.data() + x_floats + q_floats, k, (kept.size() - x_floats - q_floats) * sizeof(float),
                          cudaMemcpyDeviceToHost, kWhat);
  }

  absl::Status Download(AttentionStats& host) override {
    QSHARD_ASSIGN_OR_RETURN(auto lock, session_->Enter());
    const gpu::AttentionStatsDims& d = dims_;
    if (host.seq != seq_ || host.kv_heads != d.kv_heads || static_cast<int64_t>(host.values.size()) != d.kv_heads ||
        host.hidden != d.hidden || host.head_dim != d.head_dim)
      return absl::InternalError("attention statistics on the device: the host statistics have another shape");
    for (int64_t g = 0; g < d.kv_heads; ++g) {
      QSHARD_RETURN_IF_ERROR(DownloadHessianSum(*session_, stats_.queries(g), host.queries[g]));
      QSHARD_RETURN_IF_ERROR(DownloadHessianSum(*session_, stats_.keys(g), host.keys[g]));
    }
    QSHARD_RETURN_IF_ERROR(DownloadValues(host));
    for (int64_t first = per_slice_; first < d.kv_heads; first += per_slice_) {
      QSHARD_RETURN_IF_ERROR(AddKeptWindows({first, std::min(per_slice_, d.kv_heads - first)}));
      QSHARD_RETURN_IF_ERROR(DownloadValues(host));
    }
    stats_ = gpu::DeviceAttentionStats();
    window_ = gpu::DeviceBuffer<float>();
    kept_.clear();
    return absl::OkStatus();
  }

 private:
  // The values' sums held now into `host`; the caller has entered.
  absl::Status DownloadValues(AttentionStats& host) {
    const gpu::KvHeadRange& held = stats_.value_heads();
    for (int64_t g = held.first; g < held.first + held.count; ++g)
      QSHARD_RETURN_IF_ERROR(DownloadHessianSum(*session_, stats_.values(g), host.values[g]));
    return absl::OkStatus();
  }

  // Fresh values' sums for `heads`, and the kept windows added to them in order; the caller has
  // entered.
  absl::Status AddKeptWindows(gpu::KvHeadRange heads) {
    QSHARD_RETURN_IF_ERROR(FromCudaStatus(stats_.ResetValues(heads, session_->stream()), kWhat));
    if (window_.size() == 0) QSHARD_RETURN_IF_ERROR(FromCudaStatus(window_.Allocate(window_floats_), kWhat));
    const float* x = window_.get();
    const float* q = x + seq_ * dims_.hidden;
    const float* k = q + seq_ * dims_.heads * dims_.head_dim;
    for (const std::vector<float>& kept : kept_) {
      // Copy waits for the stream, so the previous window's products are done with the buffer.
      QSHARD_RETURN_IF_ERROR(
          session_->Copy(window_.get(), kept.data(), kept.size() * sizeof(float), cudaMemcpyHostToDevice, kWhat));
      QSHARD_RETURN_IF_ERROR(FromCudaStatus(
          stats_.AddWindow(session_->context(), x, q, k, seq_, gpu::WindowSums::kValuesOnly), kWhat));
    }
    return absl::OkStatus();
  }

  std::shared_ptr<CudaSession> session_;
  int64_t seq_;
  gpu::AttentionStatsDims dims_;
  size_t window_floats_ = 0;  // one window's x, q and k, kept in that order
  int64_t per_slice_ = 0;  // key/value heads whose values' sums are held at once
  gpu::DeviceAttentionStats stats_;
  std::vector<std::vector<float>> kept_;  // sliced: each window's x, q and k, in window order
  gpu::DeviceBuffer<float> window_;       // sliced: one kept window on the device
};

}  // namespace

absl::StatusOr<std::unique_ptr<OffHostAttentionStats>> NewCudaAttentionStats(std::shared_ptr<CudaSession> session,
                                                                             const ModelConfig& config, int64_t seq,
                                                                             int64_t value_heads) {
  auto stats = std::make_unique<CudaAttentionStats>(std::move(session), seq);
  QSHARD_RETURN_IF_ERROR(stats->Reset(config, value_heads));
  return stats;
}

}  // namespace qshard
