#include "core/model_summary.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/status.h"

namespace qshard {
namespace {

using nlohmann::json;

absl::StatusOr<std::string> TokenizerKind(const std::string& dir, Env* env) {
  const std::string tokenizer_json = dir + "/tokenizer.json";
  if (IsRegularFile(env, tokenizer_json)) {
    QSHARD_ASSIGN_OR_RETURN(const std::string text, env->ReadFileToString(tokenizer_json));
    const json tokenizer = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (tokenizer.is_discarded() || !tokenizer.is_object())
      return absl::InvalidArgumentError(absl::StrCat(tokenizer_json, ": invalid JSON"));
    const auto model = tokenizer.find("model");
    if (model == tokenizer.end() || !model->is_object())
      return absl::InvalidArgumentError(absl::StrCat(tokenizer_json, ": no 'model' object"));
    const auto type = model->find("type");
    return absl::StrCat("tokenizer.json:", type != model->end() && type->is_string() ? type->get<std::string>() : "unknown");
  }
  if (IsRegularFile(env, dir + "/vocab.json") && IsRegularFile(env, dir + "/merges.txt"))
    return std::string("vocab.json+merges.txt");
  if (IsRegularFile(env, dir + "/tokenizer.model")) return std::string("tokenizer.model");
  return std::string("none");
}

std::string HumanBytes(uint64_t bytes) {
  if (bytes >= (uint64_t{1} << 30)) return absl::StrFormat("%.2f GiB", bytes / double(uint64_t{1} << 30));
  if (bytes >= (uint64_t{1} << 20)) return absl::StrFormat("%.2f MiB", bytes / double(uint64_t{1} << 20));
  return absl::StrCat(bytes, " B");
}

std::string ShapeText(const std::vector<int64_t>& shape) { return absl::StrCat("[", absl::StrJoin(shape, ", "), "]"); }

}  // namespace

absl::StatusOr<ModelSummary> SummarizeModel(const Checkpoint& checkpoint) {
  const ModelConfig& c = checkpoint.config();
  ModelSummary s;
  s.dir = checkpoint.dir();
  s.architecture = std::string(ArchitectureName(c.arch));
  s.model_type = c.model_type;
  s.num_layers = c.num_layers;
  s.hidden_size = c.hidden_size;
  s.intermediate_size = c.intermediate_size;
  s.num_heads = c.num_heads;
  s.num_kv_heads = c.num_kv_heads;
  s.head_dim = c.head_dim;
  s.vocab_size = c.vocab_size;
  s.max_positions = c.max_positions;
  s.tie_word_embeddings = c.tie_word_embeddings;
  s.shard_files = checkpoint.shard_files();
  QSHARD_ASSIGN_OR_RETURN(s.tokenizer_kind, TokenizerKind(checkpoint.dir(), checkpoint.env()));
  for (const std::string& name : checkpoint.TensorNames()) {
    QSHARD_ASSIGN_OR_RETURN(const TensorInfo info, checkpoint.Info(name));
    const uint64_t bytes = info.end - info.begin;
    s.tensors.push_back({name, info.dtype, info.shape, bytes});
    s.parameter_count += info.num_elements();
    s.total_bytes += bytes;
    s.bytes_by_dtype[std::string(DTypeName(info.dtype))] += bytes;
  }
  return s;
}

json ModelSummary::ToJson() const {
  json tensor_list = json::array();
  for (const TensorSummary& t : tensors)
    tensor_list.push_back({{"name", t.name}, {"dtype", std::string(DTypeName(t.dtype))}, {"shape", t.shape}, {"bytes", t.bytes}});
  return {{"dir", dir},
          {"architecture", architecture},
          {"model_type", model_type},
          {"num_layers", num_layers},
          {"hidden_size", hidden_size},
          {"intermediate_size", intermediate_size},
          {"num_heads", num_heads},
          {"num_kv_heads", num_kv_heads},
          {"head_dim", head_dim},
          {"vocab_size", vocab_size},
          {"max_positions", max_positions},
          {"tie_word_embeddings", tie_word_embeddings},
          {"tokenizer_kind", tokenizer_kind},
          {"shard_files", shard_files},
          {"tensors", tensor_list},
          {"parameter_count", parameter_count},
          {"total_bytes", total_bytes},
          {"bytes_by_dtype", bytes_by_dtype}};
}

std::string ModelSummary::ToText() const {
  std::vector<std::string> dtypes;
  for (const auto& [dtype, bytes] : bytes_by_dtype) dtypes.push_back(absl::StrCat(dtype, " ", HumanBytes(bytes)));
  std::string text = absl::StrCat(
      "dir: ", dir, "\n",
      "architecture: ", architecture, " (model_type ", model_type, ")\n",
      "layers: ", num_layers, "  hidden: ", hidden_size, "  intermediate: ", intermediate_size, "\n",
      "heads: ", num_heads, "  kv heads: ", num_kv_heads, "  head dim: ", head_dim, "\n",
      "vocab: ", vocab_size, "  max positions: ", max_positions,
      "  tied embeddings: ", tie_word_embeddings ? "yes" : "no", "\n",
      "tokenizer: ", tokenizer_kind, "\n",
      "shards: ", shard_files.size(), " (", absl::StrJoin(shard_files, ", "), ")\n",
      "parameters: ", parameter_count, "\n",
      "bytes: ", total_bytes, " (", HumanBytes(total_bytes), "; ", absl::StrJoin(dtypes, ", "), ")\n",
      "tensors: ", tensors.size(), "\n");
  for (const TensorSummary& t : tensors)
    absl::StrAppend(&text, "  ", t.name, "  ", std::string(DTypeName(t.dtype)), "  ", ShapeText(t.shape), "  ", t.bytes, "\n");
  return text;
}

}  // namespace qshard
