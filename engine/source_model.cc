#include "engine/source_model.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace qshard {

absl::StatusOr<SourceModel> OpenSourceModel(const std::string& model_dir, int threads, ModelParts parts) {
  QSHARD_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> opened, Checkpoint::Open(model_dir));
  SourceModel source;
  source.checkpoint = std::move(opened);
  for (const std::string& name : source.checkpoint->TensorNames())
    if (absl::EndsWith(name, ".qweight"))
      return absl::FailedPreconditionError(absl::StrCat(model_dir, ": already quantized (", name, ")"));
  auto tensors = std::make_shared<CheckpointTensorSource>(source.checkpoint);
  QSHARD_ASSIGN_OR_RETURN(source.model, DecoderModel::Load(tensors, source.checkpoint->config(), parts));
  source.model->SetThreads(threads);
  return source;
}

}  // namespace qshard
