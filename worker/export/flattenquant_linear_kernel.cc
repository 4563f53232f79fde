#include "worker/export/flattenquant_linear_kernel.h"

#include "core/status.h"
#include "worker/methods/flatten_channels.h"

namespace qshard {

FlattenQuantLinearKernel::FlattenQuantLinearKernel(kernels::GptqTiledWeights weights, std::vector<int32_t> input_channel,
                                                   kernels::StaticActivationQuant quant, kernels::CpuVariant variant,
                                                   std::shared_ptr<ThreadPool> pool)
    : weights_(std::move(weights)), input_channel_(std::move(input_channel)), copies_(CopiesPerChannel(input_channel_)),
      quant_(quant), variant_(variant), pool_(std::move(pool)) {}

absl::StatusOr<std::shared_ptr<const FlattenQuantLinearKernel>> FlattenQuantLinearKernel::Create(
    const GptqLinearTensors& packed, std::vector<int32_t> input_channel, kernels::StaticActivationQuant quant,
    std::shared_ptr<ThreadPool> pool) {
  QSHARD_RETURN_IF_ERROR(CheckGptqTensors(packed));
  QSHARD_RETURN_IF_ERROR(kernels::CheckStaticActivationQuant(quant));
  QSHARD_RETURN_IF_ERROR(ValidateInputChannels(input_channel, packed.in_features));
  const kernels::CpuVariant variant = kernels::BestGptqVariant(kernels::GptqActivations::kInt8);
  QSHARD_ASSIGN_OR_RETURN(kernels::GptqTiledWeights tiled, kernels::TileGptq(PackedView(packed)));
  return std::shared_ptr<const FlattenQuantLinearKernel>(
      new FlattenQuantLinearKernel(std::move(tiled), std::move(input_channel), quant, variant, std::move(pool)));
}

Tensor FlattenQuantLinearKernel::Apply(const Tensor& x) const {
  const int64_t tokens = x.rows();
  std::vector<float> flat(tokens * weights_.in_features);
  FlattenActivations(x.data(), tokens, in_features(), input_channel_, copies_, flat.data());
  Tensor y({tokens, weights_.out_features});
  kernels::GptqGemmStaticChecked(weights_, flat.data(), tokens, y.data(), quant_, variant_, pool_.get());
  return y;
}

}  // namespace qshard
