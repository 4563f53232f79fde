// The architecture hyper-parameters of a Hugging Face causal LM, read from config.json.
// Covers the LLaMA family (RMSNorm, RoPE, GQA, SwiGLU) and OPT (LayerNorm, learned
// positions, ReLU MLP, biases).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "core/env.h"
#include "nlohmann/json.hpp"

namespace qshard {

enum class Architecture { kLlama, kOpt };

struct ModelConfig {
  Architecture arch = Architecture::kLlama;
  std::string model_type;  // as written in config.json
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;  // LLaMA intermediate_size, OPT ffn_dim
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;  // == num_heads without GQA
  int64_t head_dim = 0;
  int64_t vocab_size = 0;
  int64_t max_positions = 0;
  bool tie_word_embeddings = false;
  int32_t bos_token_id = -1;
  int32_t eos_token_id = -1;
  // LLaMA
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  bool attention_bias = false;
  bool mlp_bias = false;
  // OPT
  bool do_layer_norm_before = true;
  int64_t word_embed_proj_dim = 0;  // != hidden_size means project_in/out exist (OPT-350M)
  bool enable_bias = true;
  std::string activation = "relu";  // OPT activation_function; LLaMA hidden_act
  double layer_norm_eps = 1e-5;

};

// Parses config.json content; `source` names the file in error messages.
absl::StatusOr<ModelConfig> ParseModelConfig(const nlohmann::json& config, std::string_view source);
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir, Env* env = Env::Default());
std::string_view ArchitectureName(Architecture arch);

}  // namespace qshard
