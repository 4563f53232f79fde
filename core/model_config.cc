#include "core/model_config.h"


#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace qshard {
namespace {

using nlohmann::json;

class ConfigReader {
 public:
  ConfigReader(const json& config, std::string_view source) : config_(config), source_(source) {}

  absl::StatusOr<int64_t> PositiveInt(std::string_view key) const {
    const auto it = config_.find(key);
    if (it == config_.end()) return Error(key, "is missing");
    if (!it->is_number_integer() || it->get<int64_t>() <= 0) return Error(key, "must be a positive integer");
    return it->get<int64_t>();
  }
  absl::StatusOr<int64_t> PositiveIntOr(std::string_view key, int64_t fallback) const {
    if (!Has(key)) return fallback;
    return PositiveInt(key);
  }
  absl::StatusOr<double> NumberOr(std::string_view key, double fallback) const {
    if (!Has(key)) return fallback;
    const json& v = config_.at(std::string(key));
    if (!v.is_number()) return Error(key, "must be a number");
    return v.get<double>();
  }
  absl::StatusOr<bool> BoolOr(std::string_view key, bool fallback) const {
    if (!Has(key)) return fallback;
    const json& v = config_.at(std::string(key));
    if (!v.is_boolean()) return Error(key, "must be true or false");
    return v.get<bool>();
  }
  std::string StringOr(std::string_view key, std::string fallback) const {
    const auto it = config_.find(key);
    return it != config_.end() && it->is_string() ? it->get<std::string>() : fallback;
  }
  int32_t TokenIdOr(std::string_view key) const {
    const auto it = config_.find(key);
    if (it == config_.end()) return -1;
    if (it->is_number_integer()) return it->get<int32_t>();
    if (it->is_array() && !it->empty() && (*it)[0].is_number_integer()) return (*it)[0].get<int32_t>();
    return -1;
  }
  bool Has(std::string_view key) const {
    const auto it = config_.find(key);
    return it != config_.end() && !it->is_null();
  }
  absl::Status Error(std::string_view key, std::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": field '", std::string(key), "' ", std::string(what)));
  }

 private:
  const json& config_;
  std::string source_;
};

absl::Status ParseLlama(const ConfigReader& r, ModelConfig& c) {
  QSHARD_ASSIGN_OR_RETURN(c.intermediate_size, r.PositiveInt("intermediate_size"));
  QSHARD_ASSIGN_OR_RETURN(c.num_kv_heads, r.PositiveIntOr("num_key_value_heads", c.num_heads));
  QSHARD_ASSIGN_OR_RETURN(c.max_positions, r.PositiveIntOr("max_position_embeddings", 2048));
  QSHARD_ASSIGN_OR_RETURN(c.rms_norm_eps, r.NumberOr("rms_norm_eps", 1e-6));
  QSHARD_ASSIGN_OR_RETURN(c.rope_theta, r.NumberOr("rope_theta", 10000.0));
  QSHARD_ASSIGN_OR_RETURN(c.attention_bias, r.BoolOr("attention_bias", false));
  QSHARD_ASSIGN_OR_RETURN(c.mlp_bias, r.BoolOr("mlp_bias", false));
  QSHARD_ASSIGN_OR_RETURN(c.tie_word_embeddings, r.BoolOr("tie_word_embeddings", false));
  c.activation = r.StringOr("hidden_act", "silu");
  if (c.activation != "silu") return r.Error("hidden_act", "is not 'silu' (only SwiGLU LLaMA is supported)");
  if (r.Has("rope_scaling")) return r.Error("rope_scaling", "is set; RoPE scaling is not supported yet");
  if (r.Has("head_dim")) {
    QSHARD_ASSIGN_OR_RETURN(c.head_dim, r.PositiveInt("head_dim"));
  }
  return absl::OkStatus();
}

absl::Status ParseOpt(const ConfigReader& r, ModelConfig& c) {
  QSHARD_ASSIGN_OR_RETURN(c.intermediate_size, r.PositiveInt("ffn_dim"));
  c.num_kv_heads = c.num_heads;
  QSHARD_ASSIGN_OR_RETURN(c.max_positions, r.PositiveIntOr("max_position_embeddings", 2048));
  QSHARD_ASSIGN_OR_RETURN(c.do_layer_norm_before, r.BoolOr("do_layer_norm_before", true));
  QSHARD_ASSIGN_OR_RETURN(c.word_embed_proj_dim, r.PositiveIntOr("word_embed_proj_dim", c.hidden_size));
  QSHARD_ASSIGN_OR_RETURN(c.enable_bias, r.BoolOr("enable_bias", true));
  QSHARD_ASSIGN_OR_RETURN(c.tie_word_embeddings, r.BoolOr("tie_word_embeddings", true));
  QSHARD_ASSIGN_OR_RETURN(c.layer_norm_eps, r.NumberOr("layer_norm_eps", 1e-5));
  c.activation = r.StringOr("activation_function", "relu");
  if (c.activation != "relu") return r.Error("activation_function", "is not 'relu'");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelConfig> ParseModelConfig(const json& config, std::string_view source) {
  if (!config.is_object()) return absl::InvalidArgumentError(absl::StrCat(std::string(source), ": not a JSON object"));
  const ConfigReader r(config, source);
  ModelConfig c;
  c.model_type = r.StringOr("model_type", "");
  if (c.model_type == "llama" || c.model_type == "mistral") {
    c.arch = Architecture::kLlama;
  } else if (c.model_type == "opt") {
    c.arch = Architecture::kOpt;
  } else {
    return r.Error("model_type", absl::StrCat("'", c.model_type, "' is not supported (llama, opt)"));
  }
  QSHARD_ASSIGN_OR_RETURN(c.hidden_size, r.PositiveInt("hidden_size"));
  QSHARD_ASSIGN_OR_RETURN(c.num_layers, r.PositiveInt("num_hidden_layers"));
  QSHARD_ASSIGN_OR_RETURN(c.num_heads, r.PositiveInt("num_attention_heads"));
  QSHARD_ASSIGN_OR_RETURN(c.vocab_size, r.PositiveInt("vocab_size"));
  c.bos_token_id = r.TokenIdOr("bos_token_id");
  c.eos_token_id = r.TokenIdOr("eos_token_id");
  QSHARD_RETURN_IF_ERROR(c.arch == Architecture::kLlama ? ParseLlama(r, c) : ParseOpt(r, c));
  if (c.head_dim == 0) {
    if (c.hidden_size % c.num_heads != 0)
      return r.Error("num_attention_heads", "does not divide hidden_size");
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (c.num_heads % c.num_kv_heads != 0)
    return r.Error("num_key_value_heads", "does not divide num_attention_heads");
  return c;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir, Env* env) {
  const std::string path = model_dir + "/config.json";
  absl::StatusOr<std::string> text = env->ReadFileToString(path);
  if (!text.ok())
    return absl::Status(text.status().code(),
                        absl::StrCat(text.status().message(), " (is '", model_dir, "' a model directory?)"));
  json config = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(path, ": invalid JSON"));
  return ParseModelConfig(config, path);
}

std::string_view ArchitectureName(Architecture arch) {
  return arch == Architecture::kLlama ? "llama" : "opt";
}

}  // namespace qshard
