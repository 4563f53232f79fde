// The one description of a quantization job. `qshard quantize` builds it from its flags, the
// service converts SubmitJob's proto into it (remote/job_spec_proto.h), and the report
// records it. ValidateJobSpec is its only validation; every error names the flag and the proto
// field at fault, e.g. "--bits (quant.bits): 9 is not 2, 3, 4 or 8".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/model_config.h"
#include "core/tokenizer/text_tokens.h"
#include "nlohmann/json.hpp"
#include "worker/methods/layer_method.h"
#include "worker/model/layer_spec.h"

namespace qshard {

enum class Propagation {
  kSequential,  // each layer calibrated on the outputs of the quantized layers before it
  kParallel,    // every layer calibrated on full-precision inputs, so all layers solve at once
};

struct CalibrationSpec {
  std::string text;  // empty: no calibration (only for methods that need none)
  LineRange lines;
  int64_t nsamples = 128;
  int64_t seqlen = 0;  // 0: min(2048, the model's max positions)
  uint64_t seed = 0;
  // Contiguous window ranges whose statistics are summed separately, in window order, and then
  // added along a fixed binary tree in shard order (engine/statistics_tree.h). Workers own whole shards, so the bytes
  // depend on this number but never on how many workers there are.
  int shards = 8;
  Propagation propagation = Propagation::kSequential;
};

// The check run on the finished checkpoint: perplexity, KL and top-1 agreement against the
// base model. An empty text means no validation.
struct ValidationSpec {
  std::string text;
  LineRange lines;
  int64_t seqlen = 512;
  int64_t max_windows = 0;  // 0: every window of the text
};

// How the job runs; none of it changes the checkpoint's bytes.
struct ExecutionOptions {
  int threads = 0;              // 0: all hardware threads
  int64_t batch_windows = 0;    // calibration windows per forward batch; 0: ForwardBatchWindows' choice
  uint64_t max_shard_bytes = uint64_t{2} << 30;  // largest safetensors file written
};

struct JobSpec {
  std::string model_dir;
  std::string out_dir;
  MethodOptions method;
  // Linears left in full precision: glob patterns (fnmatch) over names relative to the layer,
  // e.g. "mlp.down_proj" or "self_attn.*".
  std::vector<std::string> skip;
  CalibrationSpec calibration;
  ValidationSpec validation;
  ExecutionOptions execution;
};

// Everything that can be checked without opening the model.
absl::Status ValidateJobSpec(const JobSpec& spec);

// The checks that need the model's config.json: sequence lengths within its positions, skip
// patterns that match a linear. Returns the calibration window length the job will use.
absl::StatusOr<int64_t> ValidateJobSpecForModel(const JobSpec& spec, const ModelConfig& config,
                                                const LayerSpec& layer);

// The layer-relative names of the linears `spec.skip` keeps in full precision.
std::vector<std::string> SkippedLinears(const JobSpec& spec, const LayerSpec& layer);

// The spec as recorded in quant_report.json ("settings").
nlohmann::json JobSpecJson(const JobSpec& spec, int64_t seqlen);

std::string_view PropagationName(Propagation propagation);
// "sequential" or "parallel"; the error names --propagation.
absl::StatusOr<Propagation> ParsePropagation(std::string_view name);

}  // namespace qshard
