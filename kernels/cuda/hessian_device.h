// Second-moment statistics of a linear layer's inputs on the device, the counterpart of
// worker/calibration/hessian.h: an un-normalized float64 sum Σ_t x_t x_tᵀ, a token count and
// the per-channel max |x|. Each window's product is a float32 symmetric rank-k update
// (cublasSsyrk) into a scratch matrix, then added into the float64 sum in the order windows
// arrive, by a kernel in which every element has one writer: no atomics, so the bytes of the
// sum depend only on the windows and their order (and on the GPU kind and cuBLAS version).
#pragma once

#include <cstdint>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/solver_context.h"

namespace qshard::gpu {

class DeviceHessianSum {
 public:
  // Allocates and zeroes the sum for `dim` inputs (8·dim² bytes, plus 4·dim² of scratch on the
  // first window).
  CudaStatus Reset(int64_t dim, cudaStream_t stream);
  // Adds one window x [rows, dim] (device, row-major, one token per row).
  CudaStatus AddWindow(const SolverContext& context, const float* x, int64_t rows);
  // The same with the window's product in `scratch` (dim² floats, the caller's), for sums that
  // take turns on one scratch (aespa's per-head sums, attention_stats_device.h).
  CudaStatus AddWindow(const SolverContext& context, const float* x, int64_t rows, float* scratch);
  // Replaces the sum with one made elsewhere: host_sum [dim, dim] float64, full square, over
  // `tokens` tokens (the worker's shards, reduced on the host), for the solver. Maxima are zeroed.
  CudaStatus Load(const double* host_sum, int64_t dim, int64_t tokens, cudaStream_t stream);
  // Frees the float32 scratch (the solver needs the memory more than the next layer does).
  void ReleaseScratch() { window_ = DeviceBuffer<float>(); }

  int64_t dim() const { return dim_; }
  int64_t tokens() const { return tokens_; }
  const double* sum() const { return sum_.get(); }   // [dim, dim], symmetric, full square
  const float* abs_max() const { return abs_max_.get(); }  // [dim]

 private:
  int64_t dim_ = 0;
  int64_t tokens_ = 0;
  DeviceBuffer<double> sum_;
  DeviceBuffer<float> abs_max_;
  DeviceBuffer<float> window_;  // [dim, dim] float32: one window's product, upper triangle
};

}  // namespace qshard::gpu
