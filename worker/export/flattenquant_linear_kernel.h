// A FlattenQuant linear (docs/flattenquant.md) run through the CPU integer kernels: each token's
// inputs are flattened (split channels divided by their number of copies), quantized with the
// checkpoint's per-tensor activation scale to 8 or 4 bits, and multiplied with the packed codes
// in int32 (kernels/cpu/gptq_cpu_gemm.h, GptqGemmStatic: W8A8, or W4A4 int4 × int4 → int32).
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "core/thread_pool.h"
#include "kernels/cpu/gptq_cpu_gemm.h"
#include "worker/model/layer_weights.h"
#include "worker/quant/gptq_pack.h"

namespace qshard {

class FlattenQuantLinearKernel : public LinearKernel {
 public:
  // `input_channel` [packed.in_features]: the layer input of each packed input (non-decreasing
  // from 0). Picks the fastest int8-activation variant this CPU has; pool may be null.
  static absl::StatusOr<std::shared_ptr<const FlattenQuantLinearKernel>> Create(
      const GptqLinearTensors& packed, std::vector<int32_t> input_channel, kernels::StaticActivationQuant quant,
      std::shared_ptr<ThreadPool> pool);

  int64_t out_features() const override { return weights_.out_features; }
  int64_t in_features() const override { return static_cast<int64_t>(copies_.size()); }
  Tensor Apply(const Tensor& x) const override;

 private:
  FlattenQuantLinearKernel(kernels::GptqTiledWeights weights, std::vector<int32_t> input_channel,
                           kernels::StaticActivationQuant quant, kernels::CpuVariant variant,
                           std::shared_ptr<ThreadPool> pool);

  kernels::GptqTiledWeights weights_;
  std::vector<int32_t> input_channel_;
  std::vector<int32_t> copies_;  // per layer input
  kernels::StaticActivationQuant quant_;
  kernels::CpuVariant variant_;
  std::shared_ptr<ThreadPool> pool_;
};

}  // namespace qshard
