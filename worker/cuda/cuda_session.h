// One CUDA device as the worker's glue uses it: its ordinal (made current on whichever thread
// calls: the job runner's threads take turns on a worker), one stream with its cuBLAS and
// cuSOLVER handles (kernels/cuda/solver_context.h), and a lock so that the statistics and the
// solves of one worker never use them at once. With a budget (`--device-memory`) it reports only
// that much free memory, less what this process took since it opened the session.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/cuda/solver_context.h"

namespace qshard {

// --device-memory's cap on what this process uses of a device's memory: FreeBytes is
// min(cudaMemGetInfo's free, budget − (free at open − free now)), never below 0. Whatever the free
// memory lost since the session opened counts as this process's (its buffers, cuBLAS's
// workspaces), so another process that takes or frees device memory meanwhile is misattributed
// to this one. The CUDA context, made before the first reading, does not count. No allocation is
// refused by it: it steers the decisions that ask FreeBytes (spills to the host, slices, refusals).
struct DeviceMemoryBudget {
  size_t budget = 0;        // bytes; 0: the whole device
  size_t free_at_open = 0;  // cudaMemGetInfo's free before the session took anything

  // What this process took since the session opened, by the free memory lost; 0 if it grew.
  size_t Taken(size_t free_now) const { return free_at_open > free_now ? free_at_open - free_now : 0; }
  // The free memory within the budget when cudaMemGetInfo says `free_now`.
  size_t Free(size_t free_now) const;
};

class CudaSession {
 public:
  // FAILED_PRECONDITION "no CUDA device ..." (with the CUDA error) when `index` cannot be used;
  // INVALID_ARGUMENT when the session's stream and handles take all of `budget`
  // (DeviceMemoryBudget; 0: none) on opening.
  static absl::StatusOr<std::shared_ptr<CudaSession>> Open(int index, size_t budget = 0);
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
  // The device's free memory now (cudaMemGetInfo), within the budget if there is one; the caller
  // has entered.
  absl::StatusOr<size_t> FreeBytes(const char* what) const;
  // A refusal made from FreeBytes, with "--device-memory B: " in front where there is a budget, so
  // that the free memory it names is not taken for the device's.
  absl::Status WithBudget(const absl::Status& refusal) const;

 private:
  explicit CudaSession(int index) : index_(index) {}

  int index_;
  DeviceMemoryBudget memory_;
  std::string description_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<gpu::SolverContext> context_;  // released before the stream it is bound to
  std::mutex mutex_;
};

}  // namespace qshard
