// Writes a quantized model as a Hugging Face GPTQ checkpoint directory (docs/checkpoint-
// format.md), or FlattenQuant's variant of it (docs/flattenquant.md): every quantized linear as
// qweight/qzeros/scales/g_idx (+ bias, + FlattenQuant's input_channel/act_scale), everything else
// as stored tensors, config.json with a quantization_config block, quantize_config.json, the
// source's tokenizer and generation files, and quant_report.json. Layers stream in one at a
// time, so memory stays at one layer however large the model. Files are written through an Env
// and all appear together at Finish: a failed write leaves an earlier output as it was.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/checkpoint.h"
#include "core/safetensors_writer.h"
#include "nlohmann/json.hpp"
#include "worker/model/decoder_model.h"
#include "worker/quant/quantized_weight.h"

namespace qshard {

// A linear exported in FlattenQuant's layout (docs/flattenquant.md): its own bits, a flattened
// input width, and beside the GPTQ tensors an input map and a per-tensor activation scale.
struct FlattenedLinear {
  int bits = 0;
  int act_bits = 0;
  int64_t in_features = 0;  // flattened
};

struct GptqExportSpec {
  int bits = 4;
  int group_size = -1;
  // Linears whose group size differs from group_size (FineQuant), by full module name
  // ("model.layers.0.mlp.down_proj"); recorded as quantization_config.dynamic entries
  // (worker/export/module_group_sizes.h).
  std::map<std::string, int> module_group_sizes;
  bool sym = false;
  bool desc_act = false;
  bool static_groups = false;
  bool true_sequential = true;
  double damp_percent = 0.01;
  std::string method = "gptq";  // recorded in the quantization_config meta block
  // Keyed by the linear's tensor base name ("model.layers.0.mlp.fc1"). Non-empty: the
  // checkpoint is qshard's own FlattenQuant format (quant_method "qshard-flattenquant").
  std::map<std::string, FlattenedLinear> flattened;
  uint64_t max_shard_bytes = uint64_t{2} << 30;
};

// quantization_config's quant_method of FlattenQuant checkpoints.
inline constexpr const char* kFlattenQuantMethod = "qshard-flattenquant";

class GptqCheckpointWriter {
 public:
  // Declares every tensor of the output (linears named in `skipped` stay unquantized), then
  // copies the tensors outside the layers (embeddings, final norm, head), which come first.
  // `source` supplies their bytes and the files copied beside the weights.
  static absl::StatusOr<std::unique_ptr<GptqCheckpointWriter>> Create(
      const std::string& out_dir, const Checkpoint& source, const DecoderModel& model,
      const GptqExportSpec& spec, const std::set<std::string>& skipped, Env* env = Env::Default());

  // Layers must arrive in order. `quantized` holds every linear of the layer not skipped;
  // norms and biases come from `weights` (which may carry folded scales).
  absl::Status WriteLayer(int layer, const DecoderLayerWeights& weights,
                          const std::map<std::string, QuantizedWeight>& quantized);
  // Checks every layer was written, then writes the configs, tokenizer files (read through the
  // source's Env) and `report` (as quant_report.json), and puts everything in place.
  absl::Status Finish(const nlohmann::json& report);

 private:
  GptqCheckpointWriter(const Checkpoint& source, const DecoderModel& model, GptqExportSpec spec,
                       std::set<std::string> skipped)
      : source_(source), model_(model), spec_(std::move(spec)),
        skipped_(std::move(skipped)) {}
  std::vector<std::string> OutsideLayerTensors() const;
  std::vector<TensorSpec> Declarations(const std::vector<std::string>& outside) const;
  absl::Status CopySourceTensor(const std::string& name);
  absl::Status AddConfigs();
  struct Layout {
    int bits;
    int64_t in_features;
    bool flattened;
  };
  // The exported bits and input width of the linear `base` (the spec's unless flattened).
  Layout LayoutOf(const std::string& base, const LinearSpec& linear) const;
  absl::Status WriteFlattening(const std::string& base, const QuantizedWeight& q);
  DType StorageDType(const std::string& name) const;
  int GroupSizeOf(const std::string& module) const;

  const Checkpoint& source_;
  const DecoderModel& model_;
  GptqExportSpec spec_;
  std::set<std::string> skipped_;
  std::unique_ptr<ShardedSafetensorsWriter> writer_;
  int next_layer_ = 0;
};

}  // namespace qshard
