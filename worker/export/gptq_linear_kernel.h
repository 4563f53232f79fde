// A quantized checkpoint's linear layer run through the CPU integer kernels
// (kernels/cpu/gptq_cpu_gemm.h): the packed tensors are converted once to the kernels' tiled
// layout and never dequantized to a float weight.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "core/thread_pool.h"
#include "kernels/cpu/gptq_cpu_gemm.h"
#include "worker/model/layer_weights.h"
#include "worker/quant/gptq_pack.h"

namespace qshard {

class GptqLinearKernel : public LinearKernel {
 public:
  // Picks the fastest variant this CPU has for `activations`; pool may be null.
  static absl::StatusOr<std::shared_ptr<const GptqLinearKernel>> Create(const GptqLinearTensors& packed,
                                                                        kernels::GptqActivations activations,
                                                                        std::shared_ptr<ThreadPool> pool);

  int64_t out_features() const override { return weights_.out_features; }
  int64_t in_features() const override { return weights_.in_features; }
  Tensor Apply(const Tensor& x) const override;

 private:
  GptqLinearKernel(kernels::GptqTiledWeights weights, kernels::GptqActivations activations,
                   kernels::CpuVariant variant, std::shared_ptr<ThreadPool> pool)
      : weights_(std::move(weights)), activations_(activations), variant_(variant), pool_(std::move(pool)) {}

  kernels::GptqTiledWeights weights_;
  kernels::GptqActivations activations_;
  kernels::CpuVariant variant_;
  std::shared_ptr<ThreadPool> pool_;
};

}  // namespace qshard
