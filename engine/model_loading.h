// Opens a model directory for running it: plain checkpoints as they are, GPTQ checkpoints with
// their linears through the CPU integer kernels (`kernels`, worker/export/gptq_tensor_source.h)
// or dequantized; with the directory's own tokenizer.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "core/tokenizer/tokenizer.h"
#include "worker/export/gptq_tensor_source.h"
#include "worker/model/resident_model.h"

namespace qshard {

struct LoadedModel {
  std::unique_ptr<ResidentModel> model;
  Tokenizer tokenizer;
  bool quantized = false;
};

absl::StatusOr<LoadedModel> LoadModelForInference(const std::string& dir, int threads,
                                                  GptqLinearMode kernels = GptqLinearMode::kExact);

}  // namespace qshard
