#include "worker/export/gptq_checkpoint_writer.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "worker/export/module_group_sizes.h"
#include "worker/quant/gptq_pack.h"
#include "worker/solvers/solver.h"

namespace qshard {
namespace {

using nlohmann::json;

// Files a loader needs beside the weights (conventions.md, "Checkpoints written by qshard").
constexpr const char* kCopiedFiles[] = {
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
    "merges.txt",     "tokenizer.model",       "generation_config.json",
};

absl::StatusOr<json> ReadJsonFile(Env* env, const std::string& path) {
  QSHARD_ASSIGN_OR_RETURN(const std::string text, env->ReadFileToString(path));
  json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(path, ": invalid JSON"));
  return value;
}

}  // namespace

absl::StatusOr<std::unique_ptr<GptqCheckpointWriter>> GptqCheckpointWriter::Create(
    const std::string& out_dir, const Checkpoint& source, const DecoderModel& model,
    const GptqExportSpec& spec, const std::set<std::string>& skipped, Env* env) {
  std::unique_ptr<GptqCheckpointWriter> writer(new GptqCheckpointWriter(source, model, spec, skipped));
  for (int layer = 0; layer < model.config().num_layers; ++layer)
    for (const LinearSpec& linear : model.layer_spec().linears) {
      if (skipped.count(linear.name)) continue;
      const Layout layout = writer->LayoutOf(model.tensor_names().Layer(layer) + linear.name, linear);
      QSHARD_RETURN_IF_ERROR(
          WithContext(CheckGptqLayout(layout.bits, layout.in_features, linear.out_features), linear.name));
    }
  const std::vector<std::string> outside = writer->OutsideLayerTensors();
  ShardingOptions sharding;
  sharding.max_shard_bytes = spec.max_shard_bytes;
  QSHARD_ASSIGN_OR_RETURN(writer->writer_,
                          ShardedSafetensorsWriter::Create(out_dir, writer->Declarations(outside), sharding, env));
  for (const std::string& name : outside) QSHARD_RETURN_IF_ERROR(writer->CopySourceTensor(name));
  return writer;
}

std::vector<std::string> GptqCheckpointWriter::OutsideLayerTensors() const {
  std::vector<std::string> outside;
  for (const std::string& name : source_.TensorNames())
    if (!absl::StartsWith(name, model_.tensor_names().layers)) outside.push_back(name);
  return outside;
}

DType GptqCheckpointWriter::StorageDType(const std::string& name) const {
  const auto info = source_.Info(name);
  return info.ok() && IsFloating(info->dtype) ? info->dtype : DType::kF32;
}

int GptqCheckpointWriter::GroupSizeOf(const std::string& module) const {
  const auto it = spec_.module_group_sizes.find(module);
  return it == spec_.module_group_sizes.end() ? spec_.group_size : it->second;
}

std::vector<TensorSpec> GptqCheckpointWriter::Declarations(const std::vector<std::string>& outside) const {
  std::vector<TensorSpec> specs;
  for (const std::string& name : outside) {
    const auto info = source_.Info(name);
    specs.push_back({name, info->dtype, info->shape});
  }
  for (int layer = 0; layer < model_.config().num_layers; ++layer) {
    const std::string prefix = model_.tensor_names().Layer(layer);
    for (const LinearSpec& linear : model_.layer_spec().linears) {
      const std::string base = prefix + linear.name;
      const int64_t out = linear.out_features;
      if (skipped_.count(linear.name)) {
        specs.push_back({base + ".weight", StorageDType(base + ".weight"), {out, linear.in_features}});
      } else {
        const auto [bits, in, flattened] = LayoutOf(base, linear);
        const int64_t groups = GroupCount(in, GroupSizeOf(base));
        specs.push_back({base + ".qweight", DType::kI32, {in * bits / 32, out}});
        specs.push_back({base + ".qzeros", DType::kI32, {groups, out * bits / 32}});
        specs.push_back({base + ".scales", DType::kF16, {groups, out}});
        specs.push_back({base + ".g_idx", DType::kI32, {in}});
        if (flattened) {
          specs.push_back({base + ".input_channel", DType::kI32, {in}});
          specs.push_back({base + ".act_scale", DType::kF32, {1}});
        }
      }
      if (linear.has_bias) specs.push_back({base + ".bias", StorageDType(base + ".bias"), {out}});
    }
    for (const NormSpec& norm : model_.layer_spec().norms)
      specs.push_back({prefix + norm.name, StorageDType(prefix + norm.name), {norm.size}});
  }
  return specs;
}

absl::Status GptqCheckpointWriter::CopySourceTensor(const std::string& name) {
  QSHARD_ASSIGN_OR_RETURN(const SafetensorsFile* file, source_.FileOf(name));
  return writer_->AppendRaw(name, file->Bytes(*file->Find(name)));
}

absl::Status GptqCheckpointWriter::WriteLayer(int layer, const DecoderLayerWeights& weights,
                                              const std::map<std::string, QuantizedWeight>& quantized) {
  if (layer != next_layer_)
    return absl::FailedPreconditionError(absl::StrCat("layer ", layer, " written out of order (expected ", next_layer_, ")"));
  const std::string prefix = model_.tensor_names().Layer(layer);
  for (const LinearSpec& linear : model_.layer_spec().linears) {
    const std::string base = prefix + linear.name;
    const Linear& fp = weights.linear(linear.name);
    if (skipped_.count(linear.name)) {
      QSHARD_RETURN_IF_ERROR(writer_->AppendFloat(base + ".weight", fp.weight.values()));
    } else {
      const auto it = quantized.find(linear.name);
      if (it == quantized.end())
        return absl::InternalError(absl::StrCat(base, ": no quantized weight to export"));
      const int64_t groups = GroupCount(LayoutOf(base, linear).in_features, GroupSizeOf(base));
      if (it->second.groups() != groups)
        return absl::InternalError(absl::StrCat(base, ": ", it->second.groups(), " groups, but the checkpoint declares ",
                                                groups, " (group size ", GroupSizeOf(base), ")"));
      auto packed = PackGptq(it->second);
      if (!packed.ok()) return WithContext(packed.status(), base);
      QSHARD_RETURN_IF_ERROR(writer_->AppendRaw(base + ".qweight", AsBytes(absl::MakeConstSpan(packed->qweight))));
      QSHARD_RETURN_IF_ERROR(writer_->AppendRaw(base + ".qzeros", AsBytes(absl::MakeConstSpan(packed->qzeros))));
      QSHARD_RETURN_IF_ERROR(writer_->AppendRaw(base + ".scales", AsBytes(absl::MakeConstSpan(packed->scales))));
      QSHARD_RETURN_IF_ERROR(writer_->AppendRaw(base + ".g_idx", AsBytes(absl::MakeConstSpan(packed->g_idx))));
      if (spec_.flattened.count(base)) QSHARD_RETURN_IF_ERROR(WriteFlattening(base, it->second));
    }
    if (linear.has_bias) QSHARD_RETURN_IF_ERROR(writer_->AppendFloat(base + ".bias", fp.bias.values()));
  }
  for (const NormSpec& norm : model_.layer_spec().norms)
    QSHARD_RETURN_IF_ERROR(writer_->AppendFloat(prefix + norm.name, weights.norm(norm.name).values()));
  ++next_layer_;
  return absl::OkStatus();
}

GptqCheckpointWriter::Layout GptqCheckpointWriter::LayoutOf(const std::string& base, const LinearSpec& linear) const {
  const auto it = spec_.flattened.find(base);
  if (it == spec_.flattened.end()) return {spec_.bits, linear.in_features, false};
  return {it->second.bits, it->second.in_features, true};
}

absl::Status GptqCheckpointWriter::WriteFlattening(const std::string& base, const QuantizedWeight& q) {
  std::vector<int32_t> channels = q.input_channel;
  if (channels.empty())  // nothing split: the identity map
    for (int64_t c = 0; c < q.cols; ++c) channels.push_back(static_cast<int32_t>(c));
  QSHARD_RETURN_IF_ERROR(writer_->AppendRaw(base + ".input_channel", AsBytes(absl::MakeConstSpan(channels))));
  return writer_->AppendFloat(base + ".act_scale", {q.act_scale});
}

absl::Status GptqCheckpointWriter::AddConfigs() {
  json quantize_config = {
      {"bits", spec_.bits},
      {"group_size", spec_.group_size},
      {"damp_percent", spec_.damp_percent},
      {"desc_act", spec_.desc_act},
      {"static_groups", spec_.static_groups},
      {"sym", spec_.sym},
      {"true_sequential", spec_.true_sequential},
      {"quant_method", "gptq"},
      {"checkpoint_format", "gptq"},
      {"meta", {{"quantizer", "qshard"}, {"method", spec_.method}}},
  };
  if (!spec_.module_group_sizes.empty()) quantize_config["dynamic"] = DynamicGroupSizeEntries(spec_.module_group_sizes);
  if (!spec_.flattened.empty()) {
    quantize_config["quant_method"] = kFlattenQuantMethod;
    quantize_config["checkpoint_format"] = kFlattenQuantMethod;
    json& modules = quantize_config["modules"];
    for (const auto& [base, f] : spec_.flattened)
      modules[base] = {{"bits", f.bits}, {"act_bits", f.act_bits}, {"in_features", f.in_features}};
  }
  QSHARD_ASSIGN_OR_RETURN(json config, ReadJsonFile(source_.env(), source_.dir() + "/config.json"));
  config["quantization_config"] = quantize_config;
  writer_->AddFile("config.json", config.dump(2) + "\n");
  writer_->AddFile("quantize_config.json", quantize_config.dump(2) + "\n");
  return absl::OkStatus();
}

absl::Status GptqCheckpointWriter::Finish(const json& report) {
  if (next_layer_ != model_.config().num_layers)
    return absl::FailedPreconditionError(
        absl::StrCat("only ", next_layer_, " of ", model_.config().num_layers, " layers were written"));
  QSHARD_RETURN_IF_ERROR(AddConfigs());
  Env* source_env = source_.env();
  for (const char* file : kCopiedFiles) {
    const std::string from = source_.dir() + "/" + file;
    if (!source_env->FileExists(from)) continue;
    QSHARD_ASSIGN_OR_RETURN(std::string content, source_env->ReadFileToString(from));
    writer_->AddFile(file, std::move(content));
  }
  writer_->AddFile("quant_report.json", report.dump(2) + "\n");
  return writer_->Finish();
}

}  // namespace qshard
