#include "engine/model_loading.h"

#include "core/checkpoint.h"
#include "core/status.h"

namespace qshard {

absl::StatusOr<LoadedModel> LoadModelForInference(const std::string& dir, int threads, GptqLinearMode kernels) {
  QSHARD_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(dir));
  QSHARD_ASSIGN_OR_RETURN(std::shared_ptr<const TensorSource> source, OpenModelSource(dir, {kernels, threads}));
  const bool quantized = dynamic_cast<const GptqTensorSource*>(source.get()) != nullptr;
  QSHARD_ASSIGN_OR_RETURN(std::unique_ptr<ResidentModel> model, ResidentModel::Load(std::move(source), config));
  model->SetThreads(threads);
  QSHARD_ASSIGN_OR_RETURN(Tokenizer tokenizer, Tokenizer::FromModelDir(dir));
  return LoadedModel{std::move(model), std::move(tokenizer), quantized};
}

}  // namespace qshard
