// Reads a GPTQ checkpoint (ours or AutoGPTQ's v1 layout) as a plain model: asking for
// "<linear>.weight" unpacks that linear's qweight/qzeros/scales/g_idx and returns the
// dequantized float32 weight, so the fp32 forward pass evaluates a quantized checkpoint
// unchanged (until the integer kernels run it directly).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "core/checkpoint.h"
#include "worker/model/tensor_source.h"
#include "worker/quant/gptq_pack.h"

namespace qshard {

class GptqTensorSource : public TensorSource {
 public:
  // `checkpoint` must carry a quantization_config with quant_method "gptq".
  static absl::StatusOr<std::shared_ptr<GptqTensorSource>> Create(std::shared_ptr<const Checkpoint> checkpoint);

  int bits() const { return bits_; }
  bool Has(const std::string& name) const override;
  absl::StatusOr<Tensor> Read(const std::string& name) const override;
  // The packed tensors of the linear whose weight is `weight_name` ("...q_proj.weight").
  absl::StatusOr<GptqLinearTensors> ReadPacked(const std::string& weight_name) const;

 private:
  GptqTensorSource(std::shared_ptr<const Checkpoint> checkpoint, int bits)
      : checkpoint_(std::move(checkpoint)), bits_(bits) {}
  std::shared_ptr<const Checkpoint> checkpoint_;
  int bits_;
};

// Opens a model directory as a tensor source: dequantizing for GPTQ checkpoints, plain otherwise.
absl::StatusOr<std::shared_ptr<const TensorSource>> OpenModelSource(const std::string& dir,
                                                                   Env* env = Env::Default());

}  // namespace qshard
