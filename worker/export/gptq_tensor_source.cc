#include "worker/export/gptq_tensor_source.h"

#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "nlohmann/json.hpp"
#include "worker/export/flattenquant_linear_kernel.h"
#include "worker/export/gptq_checkpoint_writer.h"
#include "worker/export/gptq_linear_kernel.h"
#include "worker/solvers/solver.h"

namespace qshard {
namespace {

constexpr absl::string_view kWeightSuffix = ".weight";

// The quantization_config block of config.json, or null when the model is not quantized.
absl::StatusOr<nlohmann::json> QuantizationConfig(const Checkpoint& checkpoint) {
  const std::string path = checkpoint.dir() + "/config.json";
  QSHARD_ASSIGN_OR_RETURN(const std::string text, checkpoint.env()->ReadFileToString(path));
  nlohmann::json config = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) return absl::InvalidArgumentError(absl::StrCat(path, ": invalid JSON"));
  const auto it = config.find("quantization_config");
  return it == config.end() ? nlohmann::json() : *it;
}

std::string LinearBase(const std::string& weight_name) {
  return weight_name.substr(0, weight_name.size() - kWeightSuffix.size());
}

template <typename T>
absl::StatusOr<std::vector<T>> ReadRaw(const Checkpoint& checkpoint, const std::string& name, DType expected) {
  QSHARD_ASSIGN_OR_RETURN(const SafetensorsFile* file, checkpoint.FileOf(name));
  const TensorInfo& info = *file->Find(name);
  if (info.dtype != expected)
    return absl::InvalidArgumentError(absl::StrCat(file->path(), ": tensor '", name, "' has dtype ",
                                                   std::string(DTypeName(info.dtype)), ", expected ",
                                                   std::string(DTypeName(expected))));
  const auto bytes = file->Bytes(info);
  std::vector<T> values(bytes.size() / sizeof(T));
  std::memcpy(values.data(), bytes.data(), bytes.size());
  return values;
}

}  // namespace

absl::StatusOr<GptqLinearMode> ParseGptqLinearMode(const std::string& name) {
  if (name == "exact") return GptqLinearMode::kExact;
  if (name == "int8" || name == "w4a8" || name == "w8a8") return GptqLinearMode::kInt8;
  if (name == "dequantize") return GptqLinearMode::kDequantize;
  return absl::InvalidArgumentError(
      absl::StrCat("--kernels: '", name, "' is not one of exact, int8 (w4a8, w8a8), dequantize"));
}

GptqTensorSource::GptqTensorSource(std::shared_ptr<const Checkpoint> checkpoint, int bits,
                                   ModuleGroupSizes group_sizes, std::map<std::string, FlattenedModule> flattened,
                                   const GptqKernelOptions& options)
    : checkpoint_(std::move(checkpoint)),
      bits_(bits),
      group_sizes_(std::move(group_sizes)),
      flattened_(std::move(flattened)),
      mode_(options.mode) {
  if (mode_ != GptqLinearMode::kDequantize) pool_ = std::make_shared<ThreadPool>(options.threads);
}

absl::StatusOr<std::shared_ptr<GptqTensorSource>> GptqTensorSource::Create(std::shared_ptr<const Checkpoint> checkpoint,
                                                                           const GptqKernelOptions& options) {
  QSHARD_ASSIGN_OR_RETURN(nlohmann::json q, QuantizationConfig(*checkpoint));
  const std::string where = absl::StrCat(checkpoint->dir(), "/config.json: quantization_config");
  const std::string method = q.is_object() ? q.value("quant_method", "") : "";
  if (method != "gptq" && method != kFlattenQuantMethod)
    return absl::InvalidArgumentError(absl::StrCat(where, ": quant_method is not 'gptq' or '", kFlattenQuantMethod, "'"));
  const auto bits = q.find("bits");
  if (bits == q.end() || !bits->is_number_integer())
    return absl::InvalidArgumentError(absl::StrCat(where, ": field 'bits' missing or not an integer"));
  auto group_sizes = ModuleGroupSizes::FromConfig(q);
  if (!group_sizes.ok()) return WithContext(group_sizes.status(), absl::StrCat(checkpoint->dir(), "/config.json"));
  std::map<std::string, FlattenedModule> flattened;
  if (method == kFlattenQuantMethod) {
    const auto modules = q.find("modules");
    if (modules == q.end() || !modules->is_object())
      return absl::InvalidArgumentError(absl::StrCat(where, ": field 'modules' missing or not an object"));
    for (const auto& [base, m] : modules->items()) {
      const bool valid = m.is_object() && m.contains("bits") && m["bits"].is_number_integer() &&
                         m.contains("act_bits") && m["act_bits"].is_number_integer();
      if (!valid)
        return absl::InvalidArgumentError(absl::StrCat(where, ": modules['", base, "'] lacks integer bits/act_bits"));
      flattened[base] = {m["bits"].get<int>(), m["act_bits"].get<int>()};
    }
  }
  return std::shared_ptr<GptqTensorSource>(new GptqTensorSource(
      std::move(checkpoint), bits->get<int>(), *std::move(group_sizes), std::move(flattened), options));
}

const GptqTensorSource::FlattenedModule* GptqTensorSource::Flattened(const std::string& weight_name) const {
  const auto it = flattened_.find(LinearBase(weight_name));
  return it == flattened_.end() ? nullptr : &it->second;
}

absl::StatusOr<std::vector<int32_t>> GptqTensorSource::ReadInputChannels(const std::string& weight_name) const {
  return ReadRaw<int32_t>(*checkpoint_, LinearBase(weight_name) + ".input_channel", DType::kI32);
}

absl::StatusOr<kernels::StaticActivationQuant> GptqTensorSource::ReadActivationQuant(
    const std::string& weight_name) const {
  const std::string name = LinearBase(weight_name) + ".act_scale";
  QSHARD_ASSIGN_OR_RETURN(const std::vector<float> scale, ReadRaw<float>(*checkpoint_, name, DType::kF32));
  if (scale.size() != 1) return absl::InvalidArgumentError(absl::StrCat(name, ": ", scale.size(), " values, expected 1"));
  return kernels::StaticActivationQuant{Flattened(weight_name)->act_bits, scale[0]};
}

bool GptqTensorSource::Has(const std::string& name) const {
  if (checkpoint_->Has(name)) return true;
  return absl::EndsWith(name, kWeightSuffix) && checkpoint_->Has(LinearBase(name) + ".qweight");
}

absl::StatusOr<GptqLinearTensors> GptqTensorSource::ReadPacked(const std::string& weight_name) const {
  const std::string base = LinearBase(weight_name);
  GptqLinearTensors t;
  const FlattenedModule* flattened = Flattened(weight_name);
  t.bits = flattened != nullptr ? flattened->bits : bits_;
  if (t.bits < 1 || t.bits > 8) return absl::InvalidArgumentError(absl::StrCat(base, ": bits ", t.bits, " outside 1..8"));
  QSHARD_ASSIGN_OR_RETURN(TensorInfo qweight, checkpoint_->Info(base + ".qweight"));
  QSHARD_ASSIGN_OR_RETURN(TensorInfo scales, checkpoint_->Info(base + ".scales"));
  if (qweight.shape.size() != 2 || scales.shape.size() != 2)
    return absl::InvalidArgumentError(absl::StrCat(base, ": qweight and scales must be 2-D"));
  t.out_features = qweight.shape[1];
  t.in_features = qweight.shape[0] * 32 / t.bits;
  t.groups = scales.shape[0];
  const std::optional<int> group_size = group_sizes_.Of(base);
  if (group_size && t.groups != GroupCount(t.in_features, *group_size))
    return absl::InvalidArgumentError(absl::StrCat(
        base, ": ", t.groups, " groups of scales, but config.json's quantization_config gives the module group size ",
        *group_size, " (", GroupCount(t.in_features, *group_size), " groups of ", t.in_features, " inputs)"));
  QSHARD_ASSIGN_OR_RETURN(t.qweight, ReadRaw<int32_t>(*checkpoint_, base + ".qweight", DType::kI32));
  QSHARD_ASSIGN_OR_RETURN(t.qzeros, ReadRaw<int32_t>(*checkpoint_, base + ".qzeros", DType::kI32));
  QSHARD_ASSIGN_OR_RETURN(t.scales, ReadRaw<uint16_t>(*checkpoint_, base + ".scales", DType::kF16));
  QSHARD_ASSIGN_OR_RETURN(t.g_idx, ReadRaw<int32_t>(*checkpoint_, base + ".g_idx", DType::kI32));
  return t;
}

absl::StatusOr<Tensor> GptqTensorSource::Read(const std::string& name) const {
  if (checkpoint_->Has(name)) return checkpoint_->ReadFloat(name);
  if (!Has(name)) return absl::NotFoundError(absl::StrCat(checkpoint_->dir(), ": no tensor '", name, "'"));
  QSHARD_ASSIGN_OR_RETURN(GptqLinearTensors packed, ReadPacked(name));
  auto weight = UnpackGptq(packed);
  if (!weight.ok()) return WithContext(weight.status(), LinearBase(name));
  if (Flattened(name) == nullptr) return weight->Dequantized();
  QSHARD_ASSIGN_OR_RETURN(weight->input_channel, ReadInputChannels(name));
  QSHARD_RETURN_IF_ERROR(WithContext(ValidateInputChannels(weight->input_channel, weight->cols), LinearBase(name)));
  return weight->LayerWeight();
}

bool GptqTensorSource::IsPacked(const std::string& weight_name) const {
  return !checkpoint_->Has(weight_name) && Has(weight_name);
}

absl::StatusOr<std::shared_ptr<const LinearKernel>> GptqTensorSource::ReadLinearKernel(
    const std::string& weight_name) const {
  if (mode_ == GptqLinearMode::kDequantize || !IsPacked(weight_name)) return std::shared_ptr<const LinearKernel>();
  QSHARD_ASSIGN_OR_RETURN(GptqLinearTensors packed, ReadPacked(weight_name));
  if (Flattened(weight_name) != nullptr) {
    QSHARD_ASSIGN_OR_RETURN(std::vector<int32_t> channels, ReadInputChannels(weight_name));
    QSHARD_ASSIGN_OR_RETURN(const kernels::StaticActivationQuant quant, ReadActivationQuant(weight_name));
    auto kernel = FlattenQuantLinearKernel::Create(packed, std::move(channels), quant, pool_);
    if (!kernel.ok()) return WithContext(kernel.status(), LinearBase(weight_name));
    return std::shared_ptr<const LinearKernel>(*std::move(kernel));
  }
  const kernels::GptqActivations activations =
      mode_ == GptqLinearMode::kExact ? kernels::GptqActivations::kFp32 : kernels::GptqActivations::kInt8;
  auto kernel = GptqLinearKernel::Create(packed, activations, pool_);
  if (!kernel.ok()) return WithContext(kernel.status(), LinearBase(weight_name));
  return std::shared_ptr<const LinearKernel>(*std::move(kernel));
}

absl::StatusOr<std::shared_ptr<const TensorSource>> OpenModelSource(const std::string& dir, const GptqKernelOptions& options,
                                                                   Env* env) {
  QSHARD_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> opened, Checkpoint::Open(dir, env));
  std::shared_ptr<const Checkpoint> checkpoint = std::move(opened);
  QSHARD_ASSIGN_OR_RETURN(nlohmann::json q, QuantizationConfig(*checkpoint));
  if (q.is_null()) return std::shared_ptr<const TensorSource>(std::make_shared<CheckpointTensorSource>(checkpoint));
  QSHARD_ASSIGN_OR_RETURN(auto gptq, GptqTensorSource::Create(checkpoint, options));
  return std::shared_ptr<const TensorSource>(std::move(gptq));
}

}  // namespace qshard
