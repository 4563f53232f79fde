#include "worker/model/tensor_source.h"

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace qshard {

TensorSource::~TensorSource() = default;

absl::StatusOr<std::shared_ptr<CheckpointTensorSource>> CheckpointTensorSource::Open(const std::string& dir, Env* env) {
  QSHARD_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> checkpoint, Checkpoint::Open(dir, env));
  return std::make_shared<CheckpointTensorSource>(std::shared_ptr<const Checkpoint>(std::move(checkpoint)));
}

bool MemoryTensorSource::Has(const std::string& name) const {
  return tensors_.count(name) > 0 || (fallback_ != nullptr && fallback_->Has(name));
}

absl::StatusOr<Tensor> MemoryTensorSource::Read(const std::string& name) const {
  const auto it = tensors_.find(name);
  if (it != tensors_.end()) return it->second;
  if (fallback_ != nullptr) return fallback_->Read(name);
  return absl::NotFoundError(absl::StrCat("tensor '", name, "' not found"));
}

}  // namespace qshard
