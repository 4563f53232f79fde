// Synthetic Hugging Face checkpoints with the real shapes and config.json of OPT and LLaMA
// models: random weights (seeded) with a few outlier input channels, a stand-in tokenizer,
// for scale and distribution tests where the real weights are not available. Tensors are
// generated and written in chunks, so memory stays at a few MB whatever the model size.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/dtype.h"
#include "core/model_config.h"
#include "core/safetensors_writer.h"

namespace qshard {

// The architecture hyper-parameters of one published model.
struct SyntheticPreset {
  std::string name;    // "opt-125m"
  std::string source;  // the Hugging Face repository whose config.json it mirrors
  Architecture arch;
  int64_t hidden_size;
  int64_t intermediate_size;  // OPT ffn_dim
  int64_t num_layers;
  int64_t num_heads;
  int64_t num_kv_heads;
  int64_t vocab_size;
  int64_t max_positions;
  double rms_norm_eps;  // LLaMA only
};

// opt-125m, opt-1.3b, opt-6.7b, opt-66b, opt-175b, llama-7b (LLaMA-1), llama-70b (Llama-2, GQA).
const std::vector<SyntheticPreset>& SyntheticPresets();
// The preset named `name`; the error lists the known names.
absl::StatusOr<SyntheticPreset> FindSyntheticPreset(std::string_view name);

// The tensors a synthetic model of `preset` with `num_layers` layers holds, in file order, with
// Hugging Face names and shapes (OPT's lm_head is tied and not stored). Their element counts
// add up to the published parameter counts (e.g. 125,239,296 for opt-125m).
std::vector<TensorSpec> SyntheticTensorSpecs(const SyntheticPreset& preset, int64_t num_layers, DType dtype);

struct SyntheticSpec {
  std::string preset;                 // a SyntheticPresets() name; it fixes the architecture
  std::optional<int64_t> num_layers;  // replaces the preset's layer count (e.g. 2 layers of opt-175b)
  std::string out_dir;                // created if missing
  uint64_t seed = 0;
  DType dtype = DType::kF16;  // F16, BF16 or F32 (config.json's torch_dtype follows)
  uint64_t max_shard_bytes = uint64_t{2} << 30;  // above this, sharded with an index
  // Outlier weights too: 1% of the input columns of every attention-output and MLP-down
  // projection (OPT out_proj/fc2, LLaMA o_proj/down_proj; drawn per tensor from the seed)
  // scaled x10, for weight-only methods (FineQuant) that must find them without data.
  bool weight_outliers = false;
  // Where the stand-in tokenizer files are copied from (the shared data folder).
  std::string shared_data_dir = "../shared/data";
  Env* env = Env::Default();  // reads the stand-in files and writes the directory
  // Only config.json, no weights: enough for `qshard plan` on a model too large to write here.
  bool config_only = false;
};

// Writes a complete model directory: config.json (the keys transformers writes for the
// architecture), generation_config.json, model.safetensors or shards + index, tokenizer files
// and a README.md saying what is synthetic, all appearing together when complete. Same spec,
// same bytes. Weights: N(0, 0.02) for
// linear layers, biases and embeddings; norm weights 1 + N(0, 0.05), with ~1% of the hidden
// channels (the same ones in every layer, picked from the seed) scaled x20 in the norms that
// feed the attention and MLP projections, so quantizers meet realistic activation outliers.
absl::Status WriteSyntheticModel(const SyntheticSpec& spec);

}  // namespace qshard
