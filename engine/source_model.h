// The full-precision model a job quantizes, opened for it: the checkpoint (its tensors stay
// memory-mapped; layers are read one at a time) and the DecoderModel around it. Refuses a
// checkpoint that is already quantized. Workers and the checkpoint stitcher both open it (the
// stitcher, the job's runner, without the embeddings and head it never uses).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "core/checkpoint.h"
#include "worker/model/decoder_model.h"

namespace qshard {

struct SourceModel {
  std::shared_ptr<const Checkpoint> checkpoint;
  std::unique_ptr<DecoderModel> model;
};

absl::StatusOr<SourceModel> OpenSourceModel(const std::string& model_dir, int threads,
                                            ModelParts parts = ModelParts::kAll);

}  // namespace qshard
