#include "worker/cuda/cuda_attention_stats.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status.h"
#include "kernels/cuda/attention_stats_device.h"
#include "worker/cuda/cuda_hessian_sum.h"
#include "worker/cuda/cuda_status_adapter.h"

namespace qshard {
namespace {

gpu::AttentionStatsDims DimsOf(const ModelConfig& c) {
  return {c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim};
}

class CudaAttentionStats final : public OffHostAttentionStats {
 public:
  CudaAttentionStats(std::shared_ptr<CudaSession> session, int64_t seq) : session_(std::move(session)), seq_(seq) {}
  ~CudaAttentionStats() override { session_->MakeCurrent(); }  // the buffers are freed on their device

  absl::Status Reset(const ModelConfig& config) {
    QSHARD_ASSIGN_OR_RETURN(auto lock, session_->Enter());
    const size_t needed = AttentionStatsDeviceBytes(config, seq_);
    QSHARD_ASSIGN_OR_RETURN(const size_t free, session_->FreeBytes("attention statistics on the device"));
    if (needed > free)
      return absl::ResourceExhaustedError(absl::StrFormat(
          "aespa's attention statistics need %.2f GB on cuda:%d (a %d × %d float64 sum per key/value head, %d "
          "heads) and %.2f GB are free: use --device cpu, or a device with more memory",
          needed / 1e9, session_->index(), config.hidden_size, config.hidden_size, config.num_kv_heads, free / 1e9));
    return FromCudaStatus(stats_.Reset(DimsOf(config), session_->stream()), "attention statistics on the device");
  }

  absl::Status AddResidentWindow(const float* x, const float* q, const float* k) override {
    QSHARD_ASSIGN_OR_RETURN(auto lock, session_->Enter());
    return FromCudaStatus(stats_.AddWindow(session_->context(), x, q, k, seq_), "attention statistics on the device");
  }

  absl::Status Download(AttentionStats& host) override {
    QSHARD_ASSIGN_OR_RETURN(auto lock, session_->Enter());
    const gpu::AttentionStatsDims& d = stats_.dims();
    if (host.seq != seq_ || host.kv_heads != d.kv_heads || static_cast<int64_t>(host.values.size()) != d.kv_heads ||
        host.hidden != d.hidden || host.head_dim != d.head_dim)
      return absl::InternalError("attention statistics on the device: the host statistics have another shape");
    for (int64_t g = 0; g < d.kv_heads; ++g) {
      QSHARD_RETURN_IF_ERROR(DownloadHessianSum(*session_, stats_.values(g), host.values[g]));
      QSHARD_RETURN_IF_ERROR(DownloadHessianSum(*session_, stats_.queries(g), host.queries[g]));
      QSHARD_RETURN_IF_ERROR(DownloadHessianSum(*session_, stats_.keys(g), host.keys[g]));
    }
    stats_ = gpu::DeviceAttentionStats();
    return absl::OkStatus();
  }

 private:
  std::shared_ptr<CudaSession> session_;
  int64_t seq_;
  gpu::DeviceAttentionStats stats_;
};

}  // namespace

size_t AttentionStatsDeviceBytes(const ModelConfig& config, int64_t seq) {
  return gpu::DeviceAttentionStatsBytes(DimsOf(config), seq);
}

absl::StatusOr<std::unique_ptr<OffHostAttentionStats>> NewCudaAttentionStats(std::shared_ptr<CudaSession> session,
                                                                             const ModelConfig& config, int64_t seq) {
  auto stats = std::make_unique<CudaAttentionStats>(std::move(session), seq);
  QSHARD_RETURN_IF_ERROR(stats->Reset(config));
  return stats;
}

}  // namespace qshard
