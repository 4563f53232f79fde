// Reads a GPTQ checkpoint (ours or AutoGPTQ's v1 layout) as a model: asking for
// "<linear>.weight" unpacks that linear's qweight/qzeros/scales/g_idx and returns the
// dequantized float32 weight; with kernel options other than kDequantize, the model's linears
// are instead served by the CPU integer kernels (ReadLinearKernel), never dequantized.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/checkpoint.h"
#include "core/thread_pool.h"
#include "worker/export/module_group_sizes.h"
#include "kernels/cpu/int8_activations.h"
#include "worker/model/tensor_source.h"
#include "worker/quant/gptq_pack.h"

namespace qshard {

// How the linears of a GPTQ checkpoint run (`qshard eval|generate --kernels`):
//   kExact      fp32 activations × codes dequantized in registers (kernels/cpu, w<b>a32): the
//               dequantized model's outputs up to float rounding;
//   kInt8       activations quantized per token to int8 × codes, int32 sums (w<b>a8);
//   kDequantize float32 weights dequantized at load and BLAS, the reference path.
// A FlattenQuant checkpoint's linears carry their own activation quantization (per tensor, 8 or
// 4 bits): kExact and kInt8 both run it (GptqGemmStatic); kDequantize gives the float weight
// the split columns stand for, with float activations.
enum class GptqLinearMode { kExact, kInt8, kDequantize };
// "exact", "int8" (also "w4a8", "w8a8"), "dequantize"; the error names --kernels.
absl::StatusOr<GptqLinearMode> ParseGptqLinearMode(const std::string& name);

struct GptqKernelOptions {
  GptqLinearMode mode = GptqLinearMode::kDequantize;
  int threads = 0;  // of the kernels' pool; 0: one per hardware thread
};

class GptqTensorSource : public TensorSource {
 public:
  // `checkpoint` must carry a quantization_config with quant_method "gptq" or
  // "qshard-flattenquant" (docs/flattenquant.md).
  static absl::StatusOr<std::shared_ptr<GptqTensorSource>> Create(std::shared_ptr<const Checkpoint> checkpoint,
                                                                  const GptqKernelOptions& options = {});

  int bits() const { return bits_; }
  bool Has(const std::string& name) const override;
  absl::StatusOr<Tensor> Read(const std::string& name) const override;
  // A GptqLinearKernel for a packed linear unless the mode is kDequantize (then null).
  absl::StatusOr<std::shared_ptr<const LinearKernel>> ReadLinearKernel(const std::string& weight_name) const override;
  // The packed tensors of the linear whose weight is `weight_name` ("...q_proj.weight"). Their
  // group count must be the one the config's group size for the module implies (its
  // "dynamic" entry, else "group_size"), so a checkpoint with per-module group sizes is read
  // only when its config records them.
  absl::StatusOr<GptqLinearTensors> ReadPacked(const std::string& weight_name) const;
  // Whether the linear whose weight is `weight_name` is stored packed (not as a float weight),
  // and whether it is a FlattenQuant linear (whose packed columns need their input map).
  bool IsPacked(const std::string& weight_name) const;
  bool IsFlattened(const std::string& weight_name) const { return Flattened(weight_name) != nullptr; }

 private:
  // A FlattenQuant linear's quantization_config "modules" entry.
  struct FlattenedModule {
    int bits = 0;
    int act_bits = 0;
  };
  GptqTensorSource(std::shared_ptr<const Checkpoint> checkpoint, int bits, ModuleGroupSizes group_sizes,
                   std::map<std::string, FlattenedModule> flattened, const GptqKernelOptions& options);
  // The flattened module of `weight_name`, or null.
  const FlattenedModule* Flattened(const std::string& weight_name) const;
  // Its input map [packed in_features] and per-tensor activation quantizer.
  absl::StatusOr<std::vector<int32_t>> ReadInputChannels(const std::string& weight_name) const;
  absl::StatusOr<kernels::StaticActivationQuant> ReadActivationQuant(const std::string& weight_name) const;

  std::shared_ptr<const Checkpoint> checkpoint_;
  int bits_;
  ModuleGroupSizes group_sizes_;
  std::map<std::string, FlattenedModule> flattened_;  // by tensor base name
  GptqLinearMode mode_;
  std::shared_ptr<ThreadPool> pool_;  // shared by the kernels of every linear; null for kDequantize
};

// Opens a model directory as a tensor source: a GptqTensorSource with `options` for GPTQ
// checkpoints, plain otherwise.
absl::StatusOr<std::shared_ptr<const TensorSource>> OpenModelSource(const std::string& dir,
                                                                   const GptqKernelOptions& options = {},
                                                                   Env* env = Env::Default());

}  // namespace qshard
