// One CUDA device as the worker's glue uses it: its ordinal (made current on whichever thread
// calls: the job runner's threads take turns on a worker), one stream with its cuBLAS and
// cuSOLVER handles (kernels/cuda/solver_context.h), and a lock so that the statistics and the
// solves of one worker never use them at once.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/cuda/solver_context.h"

namespace qshard {

class CudaSession {
 public:
  // FAILED_PRECONDITION "no CUDA device ..." (with the CUDA error) when `index` cannot be used.
  static absl::StatusOr<std::shared_ptr<CudaSession>> Open(int index);
  ~CudaSession();
  CudaSession(const CudaSession&) = delete;
  CudaSession& operator=(const CudaSession&) = delete;

  // Takes the session's lock and makes its device current on this thread.
  absl::StatusOr<std::unique_lock<std::mutex>> Enter();
  // Makes the device current without the lock: for destructors freeing device memory.
  void MakeCurrent() const;

  int index() const { return index_; }
  const std::string& description() const { return description_; }
  const gpu::SolverContext& context() const { return *context_; }
  cudaStream_t stream() const { return stream_; }

  // Copies `bytes` on the stream and waits for it (and for everything queued before it).
  absl::Status Copy(void* to, const void* from, size_t bytes, cudaMemcpyKind kind, const char* what);
  // The device's free memory now (cudaMemGetInfo); the caller has entered.
  absl::StatusOr<size_t> FreeBytes(const char* what) const;

 private:
  explicit CudaSession(int index) : index_(index) {}

  int index_;
  std::string description_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<gpu::SolverContext> context_;  // released before the stream it is bound to
  std::mutex mutex_;
};

}  // namespace qshard
