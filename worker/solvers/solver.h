// The one interface every quantization method sits behind: a QuantSpec (bits, groups,
// damping...) picks the method's options, a LayerProblem carries one linear layer's weight and
// calibration statistics, and Solve returns its QuantizedLinear. Solvers are stateless after
// construction, so independent layers may be solved concurrently with one Solver.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/tensor.h"
#include "worker/calibration/hessian.h"
#include "worker/quant/quant_grid.h"
#include "worker/quant/quantized_weight.h"

namespace qshard {

class ThreadPool;

struct QuantSpec {
  int bits = 4;
  int group_size = -1;         // input columns per group; -1: one grid per output channel
  bool sym = false;
  bool act_order = false;      // GPTQ: visit columns by descending diag(H), record g_idx
  bool static_groups = false;  // GPTQ: fit groups on the weight before any update/permutation
  bool mse_clip = false;       // GPTQ's --mse clipping search (GridOptions)
  bool fp16_scales = true;     // grids use the fp16 scale a checkpoint stores
  bool nonzero_zero_point = true;  // keep zero ≥ 1 so GPTQ v1 checkpoints can store it
  double damp = 0.01;          // added to diag(H): damp · mean(diag(H))
  int block_size = 128;        // GPTQ lazy-batch width
  // When a Cholesky factorization fails, damp grows ×damp_growth, at most max_damp_retries times.
  double damp_growth = 10.0;
  int max_damp_retries = 4;

  GridOptions grid_options() const;
};

absl::Status ValidateQuantSpec(const QuantSpec& spec);

// Grids decided before solving (e.g. Z-Fold's Hessian-searched α and zero points), indexed
// like static groups: row g covers input columns [g·group_size, (g+1)·group_size), or all
// columns per channel. The solver then quantizes onto them instead of fitting its own.
struct FixedGrids {
  Tensor scales;               // [groups, out]
  std::vector<int32_t> zeros;  // [groups, out]
};

struct LayerProblem {
  std::string_view name;  // the layer's tensor name, prefixed to every error
  const Tensor* weight = nullptr;  // [out, in], float32
  // One Hessian shared by all rows, or one per equal consecutive block of rows (aespa's
  // per-head value-projection Hessians): rows [h·out/n, (h+1)·out/n) use hessians[h]. Optional
  // for methods that need none; given to them, it only feeds proxy_error.
  std::vector<const HessianSum*> hessians;
  // Z-Fold's per-input-column step multipliers ζ [in] (> 0): step(r, c) = α_r · ζ_c. Empty: 1.
  std::span<const float> column_scale;
  const FixedGrids* fixed_grids = nullptr;
  // GPTQ: also return QuantizedLinear::unrounded (aespa's AdaRound starts from it).
  bool keep_unrounded = false;
  // Optional: threads a solver may run its own parallel work on (aespa's AdaRound).
  ThreadPool* pool = nullptr;
};

struct QuantizedLinear {
  QuantizedWeight weight;  // codes + grids, ready for PackGptq (after folding column_scale)
  Tensor dequantized;      // [out, in] == weight.Dequantized(), bit for bit
  double damp_used = 0.0;  // final relative damping (the largest over row blocks)
  int damp_retries = 0;    // Cholesky retries it took (the most over row blocks)
  // tr(ΔW H ΔWᵀ) with H = 2·sum/tokens (undamped, dead columns as measured), ΔW = W − Ŵ:
  // twice the mean squared output error per calibration token. NaN when no Hessian was given.
  double proxy_error = std::numeric_limits<double>::quiet_NaN();
  // [out, in], only when LayerProblem::keep_unrounded: each weight's error-compensated value
  // just before GPTQ rounded it.
  Tensor unrounded;
};

class Solver {
 public:
  virtual ~Solver() = default;
  virtual std::string_view method() const = 0;
  virtual bool needs_hessian() const = 0;
  virtual absl::StatusOr<QuantizedLinear> Solve(const LayerProblem& problem) const = 0;
};

// Methods: "rtn", "gptq". The spec is validated here.
absl::StatusOr<std::unique_ptr<Solver>> MakeSolver(std::string_view method, const QuantSpec& spec);

// Checks a problem against a spec: shapes, finite values, Hessians (required when
// `needs_hessian`), column multipliers and fixed grids. Errors are prefixed with problem.name.
absl::Status ValidateLayerProblem(const LayerProblem& problem, const QuantSpec& spec, bool needs_hessian);

// g_idx of grids fitted on contiguous groups of input columns (static groups, RTN, fixed
// grids): column c belongs to group c / group_size, or to group 0 per channel.
std::vector<int32_t> ContiguousGroupIndex(int64_t in, int group_size);
int64_t GroupCount(int64_t in, int group_size);

}  // namespace qshard
