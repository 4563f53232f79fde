// The quantization job in embedded mode: calibrate and quantize a model layer by layer in
// this process, and write a GPTQ checkpoint. The distributed coordinator runs the same steps
// with the windows and solves spread over workers.
//
// Per decoder layer: for each true-sequential group of linears, one pass of the calibration
// windows through the layer (as quantized so far) accumulates the group's input statistics,
// the method quantizes the group, and its dequantized weights are swapped in; a last pass
// through the quantized layer makes the next layer's inputs ("sequential" propagation). With
// "parallel" propagation one pass of the full-precision layer gathers every group's
// statistics and feeds the next layer, so no layer depends on another's solution.
//
// Memory: one layer's weights (fp32) + its statistics + the calibration hidden states,
// nsamples·seqlen·hidden·4 bytes, twice during a statistics pass (docs/architecture.md).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/text_tokens.h"
#include "nlohmann/json.hpp"
#include "worker/methods/layer_method.h"

namespace qshard {

enum class Propagation { kSequential, kParallel };

struct QuantizeJobSpec {
  std::string model_dir;
  std::string out_dir;
  MethodOptions method;
  std::string calib_text;
  LineRange calib_lines;
  int64_t nsamples = 128;
  int64_t seqlen = 0;  // 0: min(2048, the model's max positions)
  uint64_t seed = 0;
  Propagation propagation = Propagation::kSequential;
  // Linears left in full precision: glob patterns (fnmatch) over names relative to the layer,
  // e.g. "mlp.down_proj" or "self_attn.*".
  std::vector<std::string> skip;
  int threads = 0;          // 0: all hardware threads
  int64_t batch_windows = 8;  // calibration windows per forward batch
  uint64_t max_shard_bytes = uint64_t{2} << 30;
};

using ProgressSink = std::function<void(const std::string& line)>;

// Runs the job and returns its report (also written as quant_report.json in out_dir).
// The spec is checked before anything is computed; every error names the flag or file.
absl::StatusOr<nlohmann::json> RunQuantizeJob(const QuantizeJobSpec& spec, const ProgressSink& progress);

}  // namespace qshard
