// The layer-level plug-in point for quantization methods. The job driver walks a decoder
// layer's linears in true-sequential groups (DecoderModel::LinearGroups: q,k,v → o → gate,up →
// down for LLaMA; q,k,v → out → fc1 → fc2 for OPT) and hands each group to the method with the
// group's calibration statistics. A method quantizes the group's linears, swaps their
// dequantized weights into the layer (so later groups and the next layer see them), and may
// rewrite other tensors of the layer exactly (Z-Fold folds its column scales into the norm or
// the producing linear). Methods that work per linear (RTN, GPTQ) share one adapter.
#pragma once

#include <limits>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/model_config.h"
#include "worker/calibration/hessian.h"
#include "worker/model/layer_weights.h"
#include "worker/solvers/solver.h"

namespace qshard {

struct AttentionStats;  // aespa's refined statistics (worker/calibration/attention_stats.h)

// What the report says about one quantized linear.
struct LinearReport {
  std::string name;             // relative to the layer, e.g. "self_attn.q_proj"
  // ‖WX − ŴX‖² / ‖WX‖² on the calibration inputs; NaN when the method ran without them (RTN).
  double relative_error = std::numeric_limits<double>::quiet_NaN();
  double seconds = 0.0;         // solve time
  double damp_used = 0.0;
  int damp_retries = 0;
};

// The quantized linears of one layer, as they will be exported.
struct QuantizedLayer {
  std::map<std::string, QuantizedLinear> linears;
  std::vector<LinearReport> reports;
};

struct MethodOptions {
  std::string method = "gptq";  // rtn | gptq | zfold | aespa
  QuantSpec spec;
  int zfold_max_iters = 30;        // Z-Fold alternating least squares, early stop on increase
  int aespa_adaround_iters = 2000;  // 0: aespa without AdaRound
  double aespa_learning_rate = 0.015;
  uint64_t seed = 0;
};

struct GroupContext {
  int layer = 0;
  const ModelConfig* config = nullptr;
  std::vector<std::string> linears;       // the group, e.g. {"self_attn.q_proj", "self_attn.k_proj", ...}
  const HessianSum* input_stats = nullptr;  // Σ x xᵀ of the group's shared input (null for rtn)
  const AttentionStats* attention = nullptr;  // only for methods with needs_attention_stats()
  DecoderLayerWeights* weights = nullptr;   // the layer being quantized (see header comment)
  QuantizedLayer* quantized = nullptr;      // results of this layer so far; the method adds its own
};

class LayerMethod {
 public:
  virtual ~LayerMethod() = default;
  virtual std::string_view name() const = 0;
  virtual bool needs_calibration() const = 0;
  virtual bool needs_attention_stats() const { return false; }
  virtual absl::Status QuantizeGroup(GroupContext& context) const = 0;
};

absl::StatusOr<std::unique_ptr<LayerMethod>> MakeLayerMethod(const MethodOptions& options);

// ‖WX − ŴX‖² / ‖WX‖² from the input statistics: tr(ΔW S ΔWᵀ) / tr(W S Wᵀ) with S = Σ x xᵀ.
double RelativeOutputError(const Tensor& weight, const Tensor& dequantized, const HessianSum& stats);

}  // namespace qshard
