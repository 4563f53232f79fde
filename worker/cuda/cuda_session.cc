#include "worker/cuda/cuda_session.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status.h"
#include "worker/cuda/cuda_status_adapter.h"

namespace qshard {
namespace {

absl::Status NoDevice(int index, const char* what, cudaError_t error) {
  return absl::FailedPreconditionError(absl::StrCat("--device cuda:", index, ": no CUDA device: ", what, ": ",
                                                    gpu::DescribeCudaError(error)));
}

cudaError_t FreeNow(size_t& free) {
  size_t total = 0;
  return cudaMemGetInfo(&free, &total);
}

}  // namespace

size_t DeviceMemoryBudget::Free(size_t free_now) const {
  if (budget == 0) return free_now;
  const size_t taken = Taken(free_now);
  return std::min(free_now, budget > taken ? budget - taken : 0);
}

absl::StatusOr<std::shared_ptr<CudaSession>> CudaSession::Open(int index, size_t budget) {
  int count = 0;
  if (const cudaError_t error = cudaGetDeviceCount(&count); error != cudaSuccess)
    return NoDevice(index, "cudaGetDeviceCount", error);
  if (index >= count)
    return absl::FailedPreconditionError(
        absl::StrCat("--device cuda:", index, ": no CUDA device with ordinal ", index, " (this machine has ", count, ")"));
  if (const cudaError_t error = cudaSetDevice(index); error != cudaSuccess) return NoDevice(index, "cudaSetDevice", error);
  cudaDeviceProp props;
  if (const cudaError_t error = cudaGetDeviceProperties(&props, index); error != cudaSuccess)
    return NoDevice(index, "cudaGetDeviceProperties", error);
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);

  std::shared_ptr<CudaSession> session(new CudaSession(index));
  session->description_ =
      absl::StrFormat("cuda:%d (%s, %.1f GiB, compute %d.%d, CUDA runtime %d, driver %d)", index, props.name,
                      static_cast<double>(props.totalGlobalMem) / (1 << 30), props.major, props.minor, runtime, driver);
  session->memory_.budget = budget;
  if (budget != 0)
    absl::StrAppend(&session->description_, ", at most ", budget, " bytes of it for this process (--device-memory)");
  // Read before the stream and the handles are made, so that they count against the budget.
  if (const cudaError_t error = FreeNow(session->memory_.free_at_open); error != cudaSuccess)
    return NoDevice(index, "cudaMemGetInfo", error);
  if (const cudaError_t error = cudaStreamCreate(&session->stream_); error != cudaSuccess)
    return NoDevice(index, "cudaStreamCreate", error);
  session->context_ = std::make_unique<gpu::SolverContext>();
  QSHARD_RETURN_IF_ERROR(FromCudaStatus(session->context_->Init(session->stream_),
                                        absl::StrCat("--device cuda:", index, ": cuBLAS/cuSOLVER handles")));
  size_t free = 0;
  if (const cudaError_t error = FreeNow(free); error != cudaSuccess) return NoDevice(index, "cudaMemGetInfo", error);
  const size_t held = session->memory_.Taken(free);
  if (budget != 0 && held >= budget)
    return absl::InvalidArgumentError(absl::StrCat("--device-memory ", budget, ": cuda:", index, "'s session holds ",
                                                   held, " bytes once open (its stream, cuBLAS and cuSOLVER handles), ",
                                                   "all of the budget"));
  return session;
}

CudaSession::~CudaSession() {
  MakeCurrent();
  if (stream_ == nullptr) return;
  cudaStreamSynchronize(stream_);
  context_.reset();
  cudaStreamDestroy(stream_);
}

absl::StatusOr<std::unique_lock<std::mutex>> CudaSession::Enter() {
  std::unique_lock<std::mutex> lock(mutex_);
  if (const cudaError_t error = cudaSetDevice(index_); error != cudaSuccess)
    return NoDevice(index_, "cudaSetDevice", error);
  return lock;
}

void CudaSession::MakeCurrent() const { cudaSetDevice(index_); }

absl::Status CudaSession::Copy(void* to, const void* from, size_t bytes, cudaMemcpyKind kind, const char* what) {
  gpu::CudaStatus status = [&]() -> gpu::CudaStatus {
    QSHARD_CUDA_TRY(cudaMemcpyAsync(to, from, bytes, kind, stream_));
    QSHARD_CUDA_TRY(cudaStreamSynchronize(stream_));
    return gpu::CudaStatus();
  }();
  return FromCudaStatus(status, what);
}

absl::Status CudaSession::WithBudget(const absl::Status& refusal) const {
  if (memory_.budget == 0) return refusal;
  return WithContext(refusal, absl::StrCat("--device-memory ", memory_.budget));
}

absl::StatusOr<size_t> CudaSession::FreeBytes(const char* what) const {
  size_t free = 0;
  QSHARD_RETURN_IF_ERROR(FromCudaStatus(
      [&]() -> gpu::CudaStatus {
        size_t total = 0;
        QSHARD_CUDA_TRY(cudaMemGetInfo(&free, &total));
        return gpu::CudaStatus();
      }(),
      what));
  return memory_.Free(free);
}

}  // namespace qshard
