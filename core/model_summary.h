// A model directory at a glance, for `qshard inspect` and `qshard make-synthetic`: the
// architecture from config.json, every stored tensor from the safetensors headers (no tensor
// data is read), parameter and byte totals, and which tokenizer files are present.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/checkpoint.h"
#include "core/dtype.h"
#include "nlohmann/json.hpp"

namespace qshard {

struct TensorSummary {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t bytes = 0;
};

struct ModelSummary {
  std::string dir;
  std::string architecture;  // "llama" or "opt"
  std::string model_type;    // as written in config.json ("llama", "mistral", "opt")
  int64_t num_layers = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t vocab_size = 0;
  int64_t max_positions = 0;
  bool tie_word_embeddings = false;
  // "tokenizer.json:<model type>" (e.g. "tokenizer.json:BPE"), "vocab.json+merges.txt",
  // "tokenizer.model" or "none", checked in that order (the order transformers prefers).
  std::string tokenizer_kind;
  std::vector<std::string> shard_files;
  std::vector<TensorSummary> tensors;        // sorted by name
  int64_t parameter_count = 0;               // elements of all stored tensors
  uint64_t total_bytes = 0;                  // tensor bytes (as the index's total_size counts)
  std::map<std::string, uint64_t> bytes_by_dtype;  // "F16" -> bytes

  // {"dir", "architecture", ..., "tensors": [{"name", "dtype", "shape", "bytes"}], ...}; the
  // keys are the field names above.
  nlohmann::json ToJson() const;
  // A few lines of "key: value" followed by one line per tensor, for terminals.
  std::string ToText() const;
};

// Reads every shard's header (opening all shards) and the tokenizer files' names; a malformed
// tokenizer.json is an error naming it.
absl::StatusOr<ModelSummary> SummarizeModel(const Checkpoint& checkpoint);

}  // namespace qshard
