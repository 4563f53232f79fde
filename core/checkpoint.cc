#include "core/checkpoint.h"

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "nlohmann/json.hpp"

namespace qshard {
namespace {

// Shard names come from a file we did not write: they must stay inside the model directory.
bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos && name != "." && name != ".." &&
         name.find('\0') == std::string::npos;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& dir, Env* env) {
  if (!env->IsDirectory(dir)) return absl::NotFoundError(absl::StrCat(dir, ": not a directory"));
  QSHARD_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(dir, env));
  std::unique_ptr<Checkpoint> ckpt(new Checkpoint(dir, std::move(config), env));

  const std::string index = dir + "/model.safetensors.index.json";
  const std::string single = dir + "/model.safetensors";
  if (env->FileExists(index)) {
    QSHARD_RETURN_IF_ERROR(ckpt->LoadIndex(index));
  } else if (env->FileExists(single)) {
    ckpt->shard_files_.push_back("model.safetensors");
    QSHARD_ASSIGN_OR_RETURN(const SafetensorsFile* file, ckpt->Shard(0));
    for (const TensorInfo& t : file->header().tensors) ckpt->shard_of_[t.name] = 0;
  } else if (env->FileExists(dir + "/pytorch_model.bin") || env->FileExists(dir + "/pytorch_model.bin.index.json")) {
    return absl::FailedPreconditionError(absl::StrCat(
        dir, ": only pytorch_model.bin found; it is a Python pickle, and loading a pickle can run "
             "arbitrary code, so qshard reads safetensors only. Convert it first, e.g. with transformers: "
             "AutoModelForCausalLM.from_pretrained(dir).save_pretrained(out, safe_serialization=True)"));
  } else {
    return absl::NotFoundError(absl::StrCat(dir, ": no model.safetensors or model.safetensors.index.json"));
  }
  return ckpt;
}

absl::Status Checkpoint::LoadIndex(const std::string& index_path) {
  QSHARD_ASSIGN_OR_RETURN(const std::string text, env_->ReadFileToString(index_path));
  nlohmann::json index = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded() || !index.is_object())
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": invalid JSON"));
  const auto map = index.find("weight_map");
  if (map == index.end() || !map->is_object())
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": field 'weight_map' missing or not an object"));
  if (map->empty()) return absl::InvalidArgumentError(absl::StrCat(index_path, ": 'weight_map' lists no tensors"));
  std::map<std::string, size_t> shard_ids;  // file name -> index into shard_files_, sorted by name
  for (const auto& [tensor, file] : map->items()) {
    if (!file.is_string() || !IsPlainFileName(file.get<std::string>()))
      return absl::InvalidArgumentError(
          absl::StrCat(index_path, ": weight_map entry '", tensor, "' must be a file name inside the model directory"));
    shard_ids.emplace(file.get<std::string>(), 0);
  }
  for (auto& [name, id] : shard_ids) {
    id = shard_files_.size();
    shard_files_.push_back(name);
  }
  for (const auto& [tensor, file] : map->items()) shard_of_[tensor] = shard_ids.at(file.get<std::string>());
  // Shards are opened lazily, but a missing one is reported now rather than mid-job.
  for (const std::string& shard : shard_files_) {
    if (!IsRegularFile(env_, dir_ + "/" + shard))
      return absl::NotFoundError(absl::StrCat(index_path, ": shard '", shard, "' is missing from ", dir_));
  }
  return absl::OkStatus();
}

absl::StatusOr<const SafetensorsFile*> Checkpoint::Shard(size_t shard) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto& slot = open_shards_[shard];
  if (slot == nullptr) {
    QSHARD_ASSIGN_OR_RETURN(slot, SafetensorsFile::Open(dir_ + "/" + shard_files_[shard], env_));
  }
  return slot.get();
}

std::vector<std::string> Checkpoint::TensorNames() const {
  std::vector<std::string> names;
  for (const auto& [name, shard] : shard_of_) names.push_back(name);
  return names;
}

absl::StatusOr<const SafetensorsFile*> Checkpoint::FileOf(std::string_view name) const {
  const auto it = shard_of_.find(std::string(name));
  if (it == shard_of_.end()) return absl::NotFoundError(absl::StrCat(dir_, ": no tensor '", std::string(name), "'"));
  QSHARD_ASSIGN_OR_RETURN(const SafetensorsFile* file, Shard(it->second));
  if (file->Find(name) == nullptr)
    return absl::DataLossError(absl::StrCat(file->path(), ": index lists tensor '", std::string(name), "' but the shard lacks it"));
  return file;
}

absl::StatusOr<TensorInfo> Checkpoint::Info(std::string_view name) const {
  QSHARD_ASSIGN_OR_RETURN(const SafetensorsFile* file, FileOf(name));
  return *file->Find(name);
}

absl::StatusOr<Tensor> Checkpoint::ReadFloat(std::string_view name) const {
  QSHARD_ASSIGN_OR_RETURN(const SafetensorsFile* file, FileOf(name));
  return file->ReadFloat(name);
}

}  // namespace qshard
