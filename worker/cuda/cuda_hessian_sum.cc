#include "worker/cuda/cuda_hessian_sum.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "worker/cuda/cuda_status_adapter.h"

namespace qshard {
namespace {

class CudaHessianSum final : public OffHostHessianSum {
 public:
  explicit CudaHessianSum(std::shared_ptr<CudaSession> session) : session_(std::move(session)) {}
  ~CudaHessianSum() override { session_->MakeCurrent(); }  // the buffers are freed on their device

  absl::Status Reset(int64_t dim) {
    QSHARD_ASSIGN_OR_RETURN(auto lock, session_->Enter());
    return FromCudaStatus(sum_.Reset(dim, session_->stream()), "statistics on the device");
  }

  int64_t dim() const override { return sum_.dim(); }

  absl::Status AddResidentWindows(const float* x, int64_t rows, int64_t window) override {
    QSHARD_ASSIGN_OR_RETURN(auto lock, session_->Enter());
    for (int64_t start = 0; start < rows; start += window) {
      const int64_t n = std::min(window, rows - start);
      QSHARD_RETURN_IF_ERROR(
          FromCudaStatus(sum_.AddWindow(session_->context(), x + start * sum_.dim(), n), "statistics on the device"));
    }
    return absl::OkStatus();
  }

  absl::Status Download(HessianSum& host) override {
    QSHARD_ASSIGN_OR_RETURN(auto lock, session_->Enter());
    QSHARD_RETURN_IF_ERROR(DownloadHessianSum(*session_, sum_, host));
    sum_ = gpu::DeviceHessianSum();
    return absl::OkStatus();
  }

 private:
  std::shared_ptr<CudaSession> session_;
  gpu::DeviceHessianSum sum_;
};

}  // namespace

absl::Status DownloadHessianSum(CudaSession& session, const gpu::DeviceHessianSum& sum, HessianSum& host) {
  const int64_t dim = sum.dim();
  if (host.sum.size() != static_cast<size_t>(dim * dim))
    return absl::InternalError(absl::StrCat("statistics on the device: the host buffer holds ", host.sum.size(),
                                            " values, not ", dim, "²"));
  host.dim = dim;
  host.tokens = sum.tokens();
  host.abs_max.resize(dim);
  QSHARD_RETURN_IF_ERROR(session.Copy(host.sum.data(), sum.sum(), host.sum.size() * sizeof(double),
                                      cudaMemcpyDeviceToHost, "statistics from the device"));
  return session.Copy(host.abs_max.data(), sum.abs_max(), dim * sizeof(float), cudaMemcpyDeviceToHost,
                      "statistics from the device");
}

absl::StatusOr<std::unique_ptr<OffHostHessianSum>> NewCudaHessianSum(std::shared_ptr<CudaSession> session,
                                                                      int64_t dim) {
  auto sum = std::make_unique<CudaHessianSum>(std::move(session));
  QSHARD_RETURN_IF_ERROR(sum->Reset(dim));
  return sum;
}

}  // namespace qshard
