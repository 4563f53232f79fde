// A Hugging Face model directory: config.json plus one model.safetensors or a
// model.safetensors.index.json with shards. Shards are opened (memory-mapped) on first use,
// so a caller that reads one layer touches only that layer's shard and pages. Every file is
// read through the Env given to Open (core/env.h).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "core/env.h"
#include "core/model_config.h"
#include "core/safetensors.h"
#include "core/tensor.h"

namespace qshard {

class Checkpoint {
 public:
  // Opens `dir`: reads config.json and either the safetensors index (checking that every shard
  // it names is a file inside `dir`, without opening it) or the single file's header. A
  // directory holding only pytorch_model.bin is refused with a conversion hint.
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& dir, Env* env = Env::Default());

  const std::string& dir() const { return dir_; }
  // The Env the directory is read through (for the files beside the weights, too).
  Env* env() const { return env_; }
  const ModelConfig& config() const { return config_; }
  // Every tensor name, sorted.
  std::vector<std::string> TensorNames() const;
  bool Has(std::string_view name) const { return shard_of_.count(std::string(name)) > 0; }
  // Header entry of a tensor (opens its shard if needed).
  absl::StatusOr<TensorInfo> Info(std::string_view name) const;
  absl::StatusOr<Tensor> ReadFloat(std::string_view name) const;
  // The shard file holding a tensor, opened.
  absl::StatusOr<const SafetensorsFile*> FileOf(std::string_view name) const;
  // Shard file names (relative to dir), sorted.
  const std::vector<std::string>& shard_files() const { return shard_files_; }

 private:
  Checkpoint(std::string dir, ModelConfig config, Env* env)
      : dir_(std::move(dir)), config_(std::move(config)), env_(env) {}
  absl::Status LoadIndex(const std::string& index_path);
  absl::StatusOr<const SafetensorsFile*> Shard(size_t shard) const;

  std::string dir_;
  ModelConfig config_;
  Env* env_;
  std::vector<std::string> shard_files_;
  std::map<std::string, size_t> shard_of_;  // tensor name -> index into shard_files_
  mutable std::mutex mutex_;
  mutable std::map<size_t, std::unique_ptr<SafetensorsFile>> open_shards_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace qshard
