// An owning device allocation with checked copies, for the standalone check and benchmark
// programs: errors come back as CudaStatus like everywhere else in kernels/cuda.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <utility>
#include <vector>

#include "kernels/cuda/cuda_status.h"

namespace qshard::gpu {

template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer() { cudaFree(data_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    return *this;
  }

  CudaStatus Allocate(size_t count) {
    cudaFree(data_);
    data_ = nullptr;
    size_ = 0;
    // The void** form: the typed overload is only in cuda_runtime.h, which host C++ files lack.
    QSHARD_CUDA_TRY(cudaMalloc(reinterpret_cast<void**>(&data_), count * sizeof(T)));
    size_ = count;
    return CudaStatus();
  }
  CudaStatus Upload(const std::vector<T>& host) {
    QSHARD_CUDA_RETURN_IF_ERROR(Allocate(host.size()));
    QSHARD_CUDA_TRY(cudaMemcpy(data_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
    return CudaStatus();
  }
  CudaStatus Download(std::vector<T>& host) const {
    host.resize(size_);
    QSHARD_CUDA_TRY(cudaMemcpy(host.data(), data_, size_ * sizeof(T), cudaMemcpyDeviceToHost));
    return CudaStatus();
  }

  T* get() const { return data_; }
  size_t size() const { return size_; }
  size_t bytes() const { return size_ * sizeof(T); }

 private:
  T* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace qshard::gpu
