#include "worker/export/gptq_linear_kernel.h"

#include "core/status.h"

namespace qshard {

absl::StatusOr<std::shared_ptr<const GptqLinearKernel>> GptqLinearKernel::Create(
    const GptqLinearTensors& packed, kernels::GptqActivations activations, std::shared_ptr<ThreadPool> pool) {
  QSHARD_RETURN_IF_ERROR(CheckGptqTensors(packed));
  const kernels::CpuVariant variant = kernels::BestGptqVariant(activations);
  QSHARD_RETURN_IF_ERROR(kernels::CheckGptqVariant(activations, variant));
  QSHARD_ASSIGN_OR_RETURN(kernels::GptqTiledWeights tiled, kernels::TileGptq(PackedView(packed)));
  return std::shared_ptr<const GptqLinearKernel>(
      new GptqLinearKernel(std::move(tiled), activations, variant, std::move(pool)));
}

Tensor GptqLinearKernel::Apply(const Tensor& x) const {
  Tensor y({x.rows(), weights_.out_features});
  kernels::GptqGemmChecked(weights_, x.data(), x.rows(), y.data(), activations_, variant_, pool_.get());
  return y;
}

}  // namespace qshard
