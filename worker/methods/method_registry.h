// The one list of quantization methods: each entry names a method, declares the calibration
// statistics it needs (so the job collects only those) and makes it. Job validation, the
// command line's help and the job runner all read this table; a new method is a new row.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "worker/methods/layer_method.h"

namespace qshard {

struct MethodNeeds {
  bool input_stats = false;      // Σ x xᵀ of every group's input (so: calibration data)
  bool attention_stats = false;  // aespa's attention statistics for the q/k/v group
};

struct MethodRegistration {
  std::string_view name;
  MethodNeeds needs;
  // Which method-specific options it reads (the report records only those).
  bool reads_zfold_options = false;     // MethodOptions::zfold_max_iters
  bool reads_adaround_options = false;  // MethodOptions::aespa_adaround_iters, aespa_learning_rate
  bool reads_flatten_options = false;   // MethodOptions::flatten_threshold, flatten_int4_max_error
  // Each linear of a group is solved on its own (nothing shared but the input statistics), so
  // the linears of one group may be solved by different workers at once.
  bool independent_linears = false;
  // The linears of a group share one search (Z-Fold's ζ) and are independent given its result
  // (LayerMethod::SolveShared, SolveLinears): one worker solves the shared part, then the
  // linears may be solved by different workers at once.
  bool independent_after_shared = false;
  // The exported linears' input widths are known only once solved (FlattenQuant's split
  // channels): the job keeps the quantized layers and writes the checkpoint at the end.
  bool flattens_inputs = false;
  // Checks the method's options (the job spec's method part) and builds the method.
  absl::StatusOr<std::unique_ptr<LayerMethod>> (*make)(const MethodOptions& options);
  // Set for methods that choose group sizes from the weights alone (FineQuant): the size the
  // linears of one true-sequential group with these weights will get, so the checkpoint can
  // declare their tensors before any layer is solved. Null: options.spec.group_size for all.
  absl::StatusOr<int> (*group_size_of)(std::span<const Tensor* const> weights, const MethodOptions& options) = nullptr;
  // Set for methods whose linears also split by attention head (aespa's q/k/v, given the shared
  // part: LayerMethod::SolveHeads): the heads of `linear` — equal blocks of its rows, solved
  // apart and joined with the same bits — or 0 where it does not split.
  int (*heads_of)(const ModelConfig& config, const MethodOptions& options, std::string_view linear) = nullptr;
};

std::span<const MethodRegistration> RegisteredMethods();

// The registration named `name`; the error lists the known names.
absl::StatusOr<const MethodRegistration*> FindMethod(std::string_view name);

// "rtn, gptq, zfold, aespa, finequant"
std::string KnownMethodNames();

}  // namespace qshard
