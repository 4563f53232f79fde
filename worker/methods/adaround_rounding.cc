#include "worker/methods/adaround_rounding.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "core/thread_pool.h"
#include "core/vector_clones.h"
#include "kernels/cpu/bf16_gemm.h"
#include "kernels/cpu/blas.h"
#include "worker/model/vector_math.h"
#include "worker/quant/quant_grid.h"

// The element-wise loops below run once per weight and iteration and are most of AdaRound's
// time. They call no libm (exp and log are worker/model/vector_math.h's, since glibc's expf
// and powf are scalar calls) and are compiled for AVX-512, AVX2 and the baseline and picked at
// run time. The file is built with -fno-math-errno (so sqrtf vectorizes), -fno-trapping-math
// (so selects do; without it only AVX-512's masked operations do) and -ffp-contract=off (so
// no variant fuses a multiply-add the others round twice: every variant, and every machine,
// gives the same bits). QSHARD_VECTOR_CLONES is core/vector_clones.h.

namespace qshard {
namespace {

constexpr float kGamma = -0.1f;  // rectified sigmoid stretch (Louizos et al.)
constexpr float kZeta = 1.1f;
constexpr float kAdamBeta1 = 0.9f, kAdamBeta2 = 0.999f, kAdamEpsilon = 1e-8f;  // PyTorch's defaults
// Rows of E per GEMM of E·H (Reconstruction): row parts split units at these tiles. Small
// enough for parts to balance, large enough that packing H per tile costs little beside it.
constexpr int64_t kProductRows = 32;

// Every weight's step s = scale·ζ_column and zero point, flattened [rows, in] for the rows.
struct ElementGrids {
  std::vector<float> step, zero;
  int32_t max_code = 0;

  ElementGrids(const QuantizedWeight& q, RowRange rows)
      : step(rows.size() * q.cols), zero(rows.size() * q.cols), max_code(MaxCode(q.bits)) {
    for (int64_t r = rows.begin; r < rows.end; ++r)
      for (int64_t c = 0; c < q.cols; ++c) {
        const int64_t g = q.g_idx[c], i = (r - rows.begin) * q.cols + c;
        step[i] = q.scales.at(g, r) * (q.column_scale.empty() ? 1.0f : q.column_scale[c]);
        zero[i] = static_cast<float>(q.zeros[g * q.rows + r]);
      }
  }
};

// The reconstruction term of a range of rows and its gradient with respect to their quantized
// weights, unit by unit: a unit is a head's rows (with output weightings) or a Hessian block, and
// each sums its own loss; the units' losses add in unit order. A unit's product E·H is computed
// in tiles of kProductRows rows from the unit's first row, one GEMM each, so a row's bits depend
// on its tile only: rows of whole tiles descended apart (on other workers, head_parts.h, or in
// other row parts, RoundingRowParts) get the bits the whole linear gets. (The BLAS alone does
// not promise that: with OpenBLAS a row of a product can change with the product's row count.
// The gradient's bfloat16 products, kernels/cpu/bf16_gemm.h, depend on their own row only.)
// The gradient is computed chunk by chunk (a head with weightings, else a tile), so that the
// descent's element-wise passes over a chunk run while its rows are in cache.
class Reconstruction {
 public:
  // Rows [begin, end) of unit `unit` (of the problem's): the gradient's pieces, in row order.
  struct Chunk {
    int64_t begin = 0, end = 0, unit = 0;
  };

  Reconstruction(const RoundingProblem& p, RowRange rows)
      : rows_(rows), in_(p.weight->dim(1)), block_rows_(p.weight->dim(0) / static_cast<int64_t>(p.hessians.size())),
        unit_rows_(UnitRows(p)), first_unit_(rows.begin / unit_rows_), product_(rows.size() * in_),
        unit_losses_((rows.end + unit_rows_ - 1) / unit_rows_ - first_unit_) {
    for (int64_t b = rows.begin / block_rows_; b * block_rows_ < rows.end; ++b)
      hessians_.emplace_back(p.hessians[b]->begin(), p.hessians[b]->end());
    if (!p.output_weightings.empty()) {
      for (size_t u = 0; u < unit_losses_.size(); ++u) {
        const std::vector<double>& g = *p.output_weightings[first_unit_ + u];
        weightings_.emplace_back(g.begin(), g.end());
      }
      weighted_.resize(unit_rows_ * in_);
    }
    for (int64_t u = first_unit_; u * unit_rows_ < rows.end; ++u) {
      const int64_t unit_begin = u * unit_rows_;
      const int64_t begin = std::max(unit_begin, rows.begin), end = std::min(unit_begin + unit_rows_, rows.end);
      for (int64_t tile = begin; tile < end;) {
        const int64_t tile_end = weightings_.empty() ? TileEnd(unit_begin, tile, end) : end;
        chunks_.push_back({tile, tile_end, u});
        tile = tile_end;
      }
    }
  }

  const std::vector<Chunk>& chunks() const { return chunks_; }
  // Whether the products are E·H alone (no output weightings): then a chunk's row of the half
  // gradient is its row of E times the chunk's Hessian, and parts of it can be computed apart.
  bool unweighted() const { return weightings_.empty(); }
  // The Hessian block ([in, in]) chunk c's rows use.
  const float* ChunkHessian(size_t c) const { return Hessian(chunks_[c].unit); }

  // Σ_blocks tr(E H Eᵀ), or Σ_heads tr(G E_h H E_hᵀ); e holds the range's rows. unit_losses()
  // then holds the terms of the units the range meets (of their rows in it).
  double Loss(const float* e) {
    double loss = 0.0;
    for (size_t u = 0; u < unit_losses_.size(); ++u) {
      const int64_t unit_begin = (first_unit_ + static_cast<int64_t>(u)) * unit_rows_;
      const int64_t begin = std::max(unit_begin, rows_.begin), end = std::min(unit_begin + unit_rows_, rows_.end);
      const float* product = Product(first_unit_ + static_cast<int64_t>(u), begin, end, e, /*bf16=*/false);
      const float* unit_e = e + (begin - rows_.begin) * in_;
      double unit_loss = 0.0;
      for (int64_t i = 0; i < (end - begin) * in_; ++i) unit_loss += static_cast<double>(product[i]) * unit_e[i];
      unit_losses_[u] = unit_loss;
      loss += unit_loss;
    }
    return loss;
  }

  // Half of dL/dE on chunk c's rows (H and G are symmetric): E·H, or G·E_h·H, of those rows, from
  // e (the range's rows), E·H with bfloat16 inputs if bf16 (kernels/cpu/bf16_gemm.h); valid
  // until the next call.
  const float* HalfGradient(size_t c, const float* e, bool bf16) {
    const Chunk& chunk = chunks_[c];
    return Product(chunk.unit, chunk.begin, chunk.end, e, bf16);
  }

  const std::vector<double>& unit_losses() const { return unit_losses_; }

 private:
  // The end of the tile of unit rows from unit_begin that starts at row `tile`, within `end`.
  static int64_t TileEnd(int64_t unit_begin, int64_t tile, int64_t end) {
    return std::min(end, unit_begin + ((tile - unit_begin) / kProductRows + 1) * kProductRows);
  }

  // The Hessian block unit `unit`'s rows use.
  size_t HessianIndex(int64_t unit) const { return unit * unit_rows_ / block_rows_ - rows_.begin / block_rows_; }
  const float* Hessian(int64_t unit) const { return hessians_[HessianIndex(unit)].data(); }
  // The same in bfloat16, converted on first use: objectives that only measure losses never
  // hold the copy (half a float Hessian: 4.8 GB at OPT-175B's fc2).
  const kernels::Bf16Matrix& Bf16Hessian(int64_t unit) {
    if (bf16_hessians_.empty()) bf16_hessians_.resize(hessians_.size());
    kernels::Bf16Matrix& matrix = bf16_hessians_[HessianIndex(unit)];
    if (matrix.k() == 0) matrix = kernels::Bf16Matrix(Hessian(unit), in_, in_);
    return matrix;
  }

  // E·H for rows [begin, end) of unit `unit`, whole tiles of it, weighted by the unit's G if
  // there are weightings (then the rows are the whole unit).
  const float* Product(int64_t unit, int64_t begin, int64_t end, const float* e, bool bf16) {
    const int64_t unit_begin = unit * unit_rows_;
    const float* hessian = Hessian(unit);
    for (int64_t tile = begin; tile < end;) {
      const int64_t tile_end = TileEnd(unit_begin, tile, end), tile_offset = (tile - rows_.begin) * in_;
      if (bf16) {
        kernels::MultiplyBf16(tile_end - tile, e + tile_offset, in_, Bf16Hessian(unit), product_.data() + tile_offset);
      } else {
        kernels::Gemm(tile_end - tile, in_, in_, e + tile_offset, hessian, false, product_.data() + tile_offset);
      }
      tile = tile_end;
    }
    const float* product = product_.data() + (begin - rows_.begin) * in_;
    if (weightings_.empty()) return product;
    kernels::Gemm(unit_rows_, in_, unit_rows_, weightings_[unit - first_unit_].data(), product, false, weighted_.data());
    return weighted_.data();
  }

  RowRange rows_;
  int64_t in_, block_rows_, unit_rows_, first_unit_;
  std::vector<std::vector<float>> hessians_;    // the Hessian blocks the range meets, in order
  std::vector<kernels::Bf16Matrix> bf16_hessians_;  // Bf16Hessian's, converted on first use
  std::vector<std::vector<float>> weightings_;  // the range's heads, in order
  std::vector<float> product_, weighted_;
  std::vector<double> unit_losses_;
  std::vector<Chunk> chunks_;
};

// The rectified sigmoid is inside [0, 1] exactly when |v| ≤ ln((ζ − γ)/−γ − 1) = ln 11;
// beyond, h is 0 or 1 and passes no gradient.
const float kSaturation = std::log((kZeta - kGamma) / -kGamma - 1.0f);

// |t|^exponent for |t| ≤ 1 and exponent ≥ 1 (the regularizer's β − 1 and β), as
// exp(exponent·ln|t|) with the vector exp and log; |t| below 2^-100 counts as 2^-100, whose
// power is below float's normal range (exp clamps there, to about 1e-38).
inline float PowerOfFraction(float t_abs, float exponent) {
  const float log_power = exponent * LogOfNormal(std::max(t_abs, 7.8886091e-31f));
  return ExpOfClamped(std::max(log_power, -87.3f));
}

// The soft weights' errors e = s·clamp(level) − (s·z + w), h, dh/dv, and the step where the
// level's clamp passes the gradient (bounds included, as torch's clamp), else 0; sigmoid(v) by
// the vector exp, for every weight (selects drop it for the saturated ones).
QSHARD_VECTOR_CLONES
void SoftErrors(const float* __restrict v, const float* __restrict floor_level, const float* __restrict step,
                const float* __restrict offset, float max_code, int64_t n, float* __restrict h,
                float* __restrict dh_dv, float* __restrict step_in_range, float* __restrict e) {
  const float saturation = kSaturation;  // a local, so stores through h… cannot change it
  for (int64_t i = 0; i < n; ++i) {
    // Every load unconditional: conditional ones need masked loads, which only the AVX-512
    // variant would emit.
    const float x = v[i], st = step[i];
    const float s = 1.0f / (1.0f + ExpOfClamped(std::min(std::max(-x, -87.3f), 88.3f)));
    const bool saturated = std::fabs(x) > saturation;
    const float soft = std::min(std::max(s * (kZeta - kGamma) + kGamma, 0.0f), 1.0f);
    const float hi = saturated ? (x > 0.0f ? 1.0f : 0.0f) : soft;
    h[i] = hi;
    dh_dv[i] = saturated ? 0.0f : (kZeta - kGamma) * s * (1.0f - s);
    const float level = floor_level[i] + hi;
    step_in_range[i] = ((level >= 0.0f) & (level <= max_code)) ? st : 0.0f;
    e[i] = st * std::min(std::max(level, 0.0f), max_code) - offset[i];
  }
}

// The regularizer Σ(1 − |t|^β) for t = 2h − 1 (saturated weights have |t| = 1 and add nothing),
// as ChainToVariables' powers make it: a float64 sum, for Evaluate only.
double Regularizer(const float* h, int64_t n, float beta) {
  double regularizer = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float t_abs = std::fabs(2.0f * h[i] - 1.0f);
    regularizer += 1.0 - static_cast<double>(PowerOfFraction(t_abs, beta - 1.0f)) * t_abs;
  }
  return regularizer;
}

// grad = dh/dv · (dL/de · de/dh − coefficient·sign(t)·|t|^(β−1)), t = 2h − 1, dL/de = 2·half,
// zero where h passes no gradient (dh/dv ≠ 0 exactly for the live weights: there sigmoid(v) ∈
// [1/12, 11/12]); d/dh (1 − |t|^β) = −2β·sign(t)·|t|^(β−1). coefficient 0 (the warm-up) leaves
// the regularizer out.
QSHARD_VECTOR_CLONES
void ChainToVariables(const float* __restrict half, const float* __restrict step_in_range,
                      const float* __restrict dh_dv, const float* __restrict h, float coefficient, float beta,
                      int64_t n, float* __restrict grad) {
  if (coefficient == 0.0f) {
    for (int64_t i = 0; i < n; ++i) grad[i] = 2.0f * half[i] * step_in_range[i] * dh_dv[i];
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const float t = 2.0f * h[i] - 1.0f;
    const float power = std::copysign(PowerOfFraction(std::fabs(t), beta - 1.0f), t);
    grad[i] = (2.0f * half[i] * step_in_range[i] - coefficient * power) * dh_dv[i];
  }
}

// Adam (Kingma & Ba) step t ≥ 1: one sqrt and one division per weight, vectorized.
QSHARD_VECTOR_CLONES
void AdamUpdate(const float* grad, int64_t n, float learning_rate, int t, float* param, float* m, float* v) {
  const float step_size = learning_rate / (1.0f - std::pow(kAdamBeta1, static_cast<float>(t)));
  const float inverse_sqrt_correction2 = 1.0f / std::sqrt(1.0f - std::pow(kAdamBeta2, static_cast<float>(t)));
  for (int64_t i = 0; i < n; ++i) {
    m[i] = kAdamBeta1 * m[i] + (1.0f - kAdamBeta1) * grad[i];
    v[i] = kAdamBeta2 * v[i] + (1.0f - kAdamBeta2) * grad[i] * grad[i];
    param[i] -= step_size * m[i] / (std::sqrt(v[i]) * inverse_sqrt_correction2 + kAdamEpsilon);
  }
}

// β of the rounding regularizer at iteration `it`: constant through the warm-up, then linear.
float Beta(int it, const AdaRoundOptions& o) {
  const double start = o.warmup * o.iters;
  if (it < start) return static_cast<float>(o.beta_start);
  const double progress = (it - start) / (o.iters - start);
  return static_cast<float>(o.beta_end + (o.beta_start - o.beta_end) * std::max(0.0, 1.0 - progress));
}

// acc += Σ_k scale[k]·H[column k] over `count` weights of one row, whose elements index[k] −
// first are their columns: the rows of H ([·, n]) added one after another in k order, four per
// pass over acc (((acc + a) + b) + c … rounds as four passes would).
QSHARD_VECTOR_CLONES
void AddScaledRows(const float* scale, const int32_t* index, int64_t count, int64_t first, const float* hessian,
                   int64_t n, float* __restrict acc) {
  int64_t k = 0;
  for (; k + 4 <= count; k += 4) {
    const float* __restrict h0 = hessian + (index[k] - first) * n;
    const float* __restrict h1 = hessian + (index[k + 1] - first) * n;
    const float* __restrict h2 = hessian + (index[k + 2] - first) * n;
    const float* __restrict h3 = hessian + (index[k + 3] - first) * n;
    const float s0 = scale[k], s1 = scale[k + 1], s2 = scale[k + 2], s3 = scale[k + 3];
    for (int64_t j = 0; j < n; ++j) acc[j] = acc[j] + s0 * h0[j] + s1 * h1[j] + s2 * h2[j] + s3 * h3[j];
  }
  for (; k < count; ++k) {
    const float* __restrict h0 = hessian + (index[k] - first) * n;
    const float s0 = scale[k];
    for (int64_t j = 0; j < n; ++j) acc[j] = acc[j] + s0 * h0[j];
  }
}

// Packing a chunk's live weights: their soft errors out to the chunk's rows of E, and the
// product's values in from them (index: each live weight's element in the chunk).
void ScatterToChunk(const float* packed, const int32_t* index, int64_t n, float* chunk) {
  for (int64_t j = 0; j < n; ++j) chunk[index[j]] = packed[j];
}
void GatherFromChunk(const float* chunk, const int32_t* index, int64_t n, float* packed) {
  for (int64_t j = 0; j < n; ++j) packed[j] = chunk[index[j]];
}

// AdaRound's descent works on the live weights only (|v| ≤ ln 11). Once a weight's v leaves that
// range it never returns, so its h (0 or 1), its soft error and its code are final: it passes no
// gradient (dh/dv = 0), so Adam's first moment m only decays (0.9·m keeps its sign, even as a
// subnormal), and m had the sign that moved v out (v − step·m/(√v̂ + ε) with a positive
// denominator moves v against m; a v that starts just outside has m = 0 and never moves), so
// every later step moves v further out or leaves it. The descent therefore drops such a weight
// (a frozen weight) and keeps its last v for the codes: the live weights' operations and E are
// those of the full descent, so the codes have the full descent's bits (with the tile GEMM for
// every product; the live products below sum in another order), while the element-wise work
// shrinks with the live weights (about 90 % of them in the warm-up, 40 % when the regularizer
// starts, none at the end).
struct Descent {
  // Per chunk of the reconstruction: how many of its weights are live; they are packed, in
  // element order, from the chunk's first element in the arrays below.
  std::vector<int64_t> live;
  std::vector<int32_t> index;  // a live weight's element in its chunk
  std::vector<float> v, m, second_moment, floor_level, step, offset;  // a live weight's
  std::vector<float> variables;  // every weight's v, a frozen one's from when it froze
  std::vector<float> e;          // every weight's soft error (E of the range's rows)
  std::vector<float> grad;       // a live weight's gradient in the last step
  std::vector<float> packed_e, packed_half;  // one chunk's live weights' (scratch)
  // Without output weightings, a chunk whose live weights have fallen below the live-product
  // share computes its product at them only (StartLiveProduct, AddHessianRows): per row r, the frozen weights' part
  // Σ_{k frozen} e_rk·H[k, :] (kept here, updated as weights freeze; a frozen e is final) plus
  // the live weights' rows of H.
  std::vector<char> live_product;    // per chunk: it has switched
  std::vector<float> frozen_part;    // [range rows, in], for the switched chunks' rows
  std::vector<float> row;            // one row's product (scratch)
  std::vector<int32_t> dropped;      // the weights a repack drops (scratch)
  std::vector<float> dropped_e;      // and their soft errors (scratch)
};

// A chunk's live weights are packed again once this share of them has frozen: packing costs a
// pass over them, and the packed passes a gather and a scatter per weight.
constexpr int64_t kRepackShare = 4;

// The live share below which a chunk's product is computed at its live weights only, row by row
// (at a share p, p·in² multiply-adds per row as rows of H added to the frozen part, against the
// tile GEMM's in² at a higher rate; 0.25 and 0.4 measured alike on the TinyStories aespa job, 0.6
// slower: docs/performance.md).
constexpr double kLiveProductShare = 0.25;

// v at which the soft weight of unrounded value u on a grid of step s equals u.
float InitialVariable(float unrounded, float step) {
  const float scaled = unrounded / step;
  const float rest = std::clamp(scaled - std::floor(scaled), 0.0f, 1.0f);
  return -std::log((kZeta - kGamma) / (rest - kGamma) - 1.0f);  // h(v) = rest
}

// The level below u: ⌊u/s⌋ + z.
float FloorLevel(float unrounded, float step, float zero) { return std::floor(unrounded / step) + zero; }

}  // namespace

struct SoftRoundingObjective::State {
  const RoundingProblem& problem;
  const int64_t first;  // the range's first element in the problem's [out, in]
  const ElementGrids grids;
  Reconstruction reconstruction;
  // Per weight: ⌊u/s⌋ + z the level below u, and s·z + w so that the error is s·clamp(level) − (s·z + w).
  std::vector<float> floor_level, offset;
  std::vector<float> h, dh_dv, step_in_range, e;  // per-call scratch
  std::unique_ptr<Descent> descent;               // AdamStep's, from the first step
  double live_product_share = kLiveProductShare;
  bool bf16_products = false;

  State(const RoundingProblem& p, RowRange rows)
      : problem(p), first(rows.begin * p.weight->dim(1)), grids(*p.initial, rows), reconstruction(p, rows) {
    const int64_t n = static_cast<int64_t>(grids.step.size());
    for (std::vector<float>* buffer : {&floor_level, &offset, &h, &dh_dv, &step_in_range, &e}) buffer->resize(n);
    for (int64_t i = 0; i < n; ++i) {
      floor_level[i] = FloorLevel(unrounded(i), grids.step[i], grids.zero[i]);
      offset[i] = grids.step[i] * grids.zero[i] + weight(i);
    }
  }

  // The problem's u and w at the range's element i.
  float unrounded(int64_t i) const { return (*problem.unrounded)[first + i]; }
  float weight(int64_t i) const { return (*problem.weight)[first + i]; }

  // Chunk c's first element in the range and its count.
  std::pair<int64_t, int64_t> ChunkElements(size_t c) const {
    const Reconstruction::Chunk& chunk = reconstruction.chunks()[c];
    const int64_t in = problem.weight->dim(1);
    return {chunk.begin * in - first, (chunk.end - chunk.begin) * in};
  }

  // The gradient at v into grad, chunk by chunk. Leaves h and e for the whole range.
  void Gradient(const float* v, float lambda, float beta, float* grad) {
    const float max_code = static_cast<float>(grids.max_code);
    for (size_t c = 0; c < reconstruction.chunks().size(); ++c) {
      const auto [at, n] = ChunkElements(c);
      SoftErrors(v + at, floor_level.data() + at, grids.step.data() + at, offset.data() + at, max_code, n,
                 h.data() + at, dh_dv.data() + at, step_in_range.data() + at, e.data() + at);
      ChainToVariables(reconstruction.HalfGradient(c, e.data(), bf16_products), step_in_range.data() + at,
                       dh_dv.data() + at, h.data() + at, lambda * 2.0f * beta, beta, n, grad + at);
    }
  }

  void StartDescent(std::vector<float> initial) {
    descent = std::make_unique<Descent>();
    Descent& d = *descent;
    d.v = d.variables = std::move(initial);
    d.m.assign(d.v.size(), 0.0f);
    d.second_moment.assign(d.v.size(), 0.0f);
    d.grad.assign(d.v.size(), 0.0f);
    d.floor_level = floor_level;
    d.step = grids.step;
    d.offset = offset;
    d.e.resize(d.v.size());
    d.index.resize(d.v.size());
    int64_t largest = 0;
    for (size_t c = 0; c < reconstruction.chunks().size(); ++c) {
      const auto [at, n] = ChunkElements(c);
      d.live.push_back(n);
      for (int64_t j = 0; j < n; ++j) d.index[at + j] = static_cast<int32_t>(j);
      largest = std::max(largest, n);
    }
    for (std::vector<float>* buffer : {&d.packed_e, &d.packed_half}) buffer->resize(largest);
    d.live_product.assign(reconstruction.chunks().size(), 0);
    if (reconstruction.unweighted() && live_product_share > 0.0) {
      d.frozen_part.resize(d.v.size());
      d.row.resize(problem.weight->dim(1));
      d.dropped.resize(largest);
      d.dropped_e.resize(largest);
    }
  }

  // Adds the scaled Hessian rows of `count` weights of chunk c (elements `index` in the chunk,
  // in element order, row after row) to the rows of `rows` (the chunk's [rows, in]), one row at
  // a time; with `gather`, each row's sum (after `rows`' row is copied into the scratch row
  // first) is instead read back at the weights' columns into gather[k].
  void AddHessianRows(size_t c, const float* scale, const int32_t* index, int64_t count, float* rows, float* gather) {
    Descent& d = *descent;
    const int64_t in = problem.weight->dim(1);
    const float* hessian = reconstruction.ChunkHessian(c);
    for (int64_t p = 0; p < count;) {
      const int64_t row = index[p] / in;
      int64_t q = p;
      while (q < count && index[q] / in == row) ++q;
      float* acc = rows + row * in;
      if (gather != nullptr) {
        std::copy(acc, acc + in, d.row.begin());
        acc = d.row.data();
      }
      AddScaledRows(scale + p, index + p, q - p, row * in, hessian, in, acc);
      if (gather != nullptr)
        for (int64_t k = p; k < q; ++k) gather[k] = acc[index[k] - row * in];
      p = q;
    }
  }

  // One iteration of the descent on the live weights, chunk by chunk (a chunk's gradient reads
  // its own rows of E only, so Adam's step on them follows while they are in cache). A chunk none
  // of whose weights has frozen yet works on the rows of E in place; one whose weights have all
  // frozen needs no product; one with few live weights left adds their rows of H to its rows'
  // frozen parts instead of the tile GEMM.
  void AdamStep(float lambda, float beta, float learning_rate, int t) {
    Descent& d = *descent;
    const float max_code = static_cast<float>(grids.max_code);
    for (size_t c = 0; c < reconstruction.chunks().size(); ++c) {
      const auto [at, n] = ChunkElements(c);
      const int64_t live = d.live[c];
      if (live == 0) continue;
      const bool packed = live < n;
      SoftErrors(d.v.data() + at, d.floor_level.data() + at, d.step.data() + at, d.offset.data() + at, max_code, live,
                 h.data() + at, dh_dv.data() + at, step_in_range.data() + at, packed ? d.packed_e.data() : d.e.data() + at);
      const float* half = d.packed_half.data();
      if (d.live_product[c]) {
        AddHessianRows(c, d.packed_e.data(), d.index.data() + at, live, d.frozen_part.data() + at, d.packed_half.data());
      } else {
        if (packed) ScatterToChunk(d.packed_e.data(), d.index.data() + at, live, d.e.data() + at);
        half = reconstruction.HalfGradient(c, d.e.data(), bf16_products);
        if (packed) {
          GatherFromChunk(half, d.index.data() + at, live, d.packed_half.data());
          half = d.packed_half.data();
        }
      }
      ChainToVariables(half, step_in_range.data() + at, dh_dv.data() + at, h.data() + at, lambda * 2.0f * beta, beta,
                       live, d.grad.data() + at);
      AdamUpdate(d.grad.data() + at, live, learning_rate, t, d.v.data() + at, d.m.data() + at,
                 d.second_moment.data() + at);
      // The weights saturated in this step (dh/dv = 0) have their final soft error in E (or, in a
      // chunk computing live products, in packed_e, which Repack adds to the frozen part).
      const int64_t frozen = std::count(dh_dv.begin() + at, dh_dv.begin() + at + live, 0.0f);
      if (frozen > 0 && frozen * kRepackShare >= live) Repack(c, at);
    }
  }

  // Drops chunk c's weights that saturated in this step, keeping their v for the codes, and
  // their soft errors (in packed_e) in the frozen part if the chunk computes live products.
  void Repack(size_t c, int64_t at) {
    Descent& d = *descent;
    int64_t kept = at, dropped = 0;
    for (int64_t j = at; j < at + d.live[c]; ++j) {
      if (dh_dv[j] == 0.0f) {
        d.variables[at + d.index[j]] = d.v[j];
        if (d.live_product[c]) {
          d.dropped_e[dropped] = d.packed_e[j - at];
          d.dropped[dropped++] = d.index[j];
        }
        continue;
      }
      for (std::vector<float>* a : {&d.v, &d.m, &d.second_moment, &d.grad, &d.floor_level, &d.step, &d.offset})
        (*a)[kept] = (*a)[j];
      d.index[kept++] = d.index[j];
    }
    d.live[c] = kept - at;
    if (d.live_product[c]) {
      AddHessianRows(c, d.dropped_e.data(), d.dropped.data(), dropped, d.frozen_part.data() + at, nullptr);
    } else if (!d.frozen_part.empty() && d.live[c] > 0 && d.live[c] < live_product_share * ChunkElements(c).second) {
      StartLiveProduct(c, at);
    }
  }

  // Switches chunk c to LiveProduct: its frozen part is the product of its rows of E with the
  // live weights' soft errors zeroed (E holds every frozen one's final soft error).
  void StartLiveProduct(size_t c, int64_t at) {
    Descent& d = *descent;
    const Reconstruction::Chunk& chunk = reconstruction.chunks()[c];
    const int64_t n = ChunkElements(c).second, in = problem.weight->dim(1);
    float* frozen_e = d.packed_half.data();  // scratch of a chunk's size, unused until the next step
    std::copy(d.e.begin() + at, d.e.begin() + at + n, frozen_e);
    for (int64_t j = at; j < at + d.live[c]; ++j) frozen_e[d.index[j]] = 0.0f;
    kernels::Gemm(chunk.end - chunk.begin, in, in, frozen_e, reconstruction.ChunkHessian(c), false,
                  d.frozen_part.data() + at);
    d.live_product[c] = 1;
  }

  // A per-weight array of the descent's over the range: `live`'s packed values of the live
  // weights written over `all` (the frozen weights' values).
  std::vector<float> Unpacked(const std::vector<float>& live, std::vector<float> all) const {
    const Descent& d = *descent;
    for (size_t c = 0; c < reconstruction.chunks().size(); ++c) {
      const int64_t at = ChunkElements(c).first;
      ScatterToChunk(live.data() + at, d.index.data() + at, d.live[c], all.data() + at);
    }
    return all;
  }
};

SoftRoundingObjective::SoftRoundingObjective(const RoundingProblem& problem)
    : SoftRoundingObjective(problem, {0, problem.weight->dim(0)}) {}

SoftRoundingObjective::SoftRoundingObjective(const RoundingProblem& problem, RowRange rows)
    : state_(std::make_unique<State>(problem, rows)) {}

SoftRoundingObjective::~SoftRoundingObjective() = default;

std::vector<float> SoftRoundingObjective::InitialVariables() const {
  const State& s = *state_;
  std::vector<float> v(s.grids.step.size());
  for (size_t i = 0; i < v.size(); ++i) v[i] = InitialVariable(s.unrounded(static_cast<int64_t>(i)), s.grids.step[i]);
  return v;
}

RoundingStart RoundingStartOf(const RoundingProblem& problem) {
  // From the grids alone: an objective would also copy the Hessians (gigabytes at OPT-175B).
  ElementGrids grids(*problem.initial, {0, problem.weight->dim(0)});
  RoundingStart start;
  start.max_code = grids.max_code;
  start.floor_level.resize(grids.step.size());
  start.variables.resize(grids.step.size());
  for (size_t i = 0; i < grids.step.size(); ++i) {
    const float u = (*problem.unrounded)[static_cast<int64_t>(i)];
    start.floor_level[i] = FloorLevel(u, grids.step[i], grids.zero[i]);
    start.variables[i] = InitialVariable(u, grids.step[i]);
  }
  start.step = std::move(grids.step);
  start.zero = std::move(grids.zero);
  return start;
}

double SoftRoundingObjective::Evaluate(std::span<const float> v, float lambda, float beta, std::span<float> grad) {
  State& s = *state_;
  s.Gradient(v.data(), lambda, beta, grad.data());
  double objective = s.reconstruction.Loss(s.e.data());
  if (lambda != 0.0f) objective += lambda * Regularizer(s.h.data(), static_cast<int64_t>(v.size()), beta);
  return objective;
}

void SoftRoundingObjective::Gradient(std::span<const float> v, float lambda, float beta, std::span<float> grad) {
  state_->Gradient(v.data(), lambda, beta, grad.data());
}

void SoftRoundingObjective::SetLiveProductShare(double share) { state_->live_product_share = share; }

void SoftRoundingObjective::SetBf16Products(bool bf16) { state_->bf16_products = bf16; }

void SoftRoundingObjective::AdamStep(float lambda, float beta, float learning_rate, int t) {
  State& s = *state_;
  if (s.descent == nullptr) s.StartDescent(InitialVariables());
  s.AdamStep(lambda, beta, learning_rate, t);
}

std::vector<int32_t> SoftRoundingObjective::DescentCodes() const {
  return Codes(DescentVariables());
}

std::vector<float> SoftRoundingObjective::DescentVariables() const {
  const State& s = *state_;
  return s.descent == nullptr ? InitialVariables() : s.Unpacked(s.descent->v, s.descent->variables);
}

std::vector<float> SoftRoundingObjective::DescentGradient() const {
  const State& s = *state_;
  std::vector<float> zeros(s.grids.step.size(), 0.0f);
  return s.descent == nullptr ? zeros : s.Unpacked(s.descent->grad, std::move(zeros));
}

int64_t SoftRoundingObjective::LiveWeights() const {
  const State& s = *state_;
  if (s.descent == nullptr) return static_cast<int64_t>(s.grids.step.size());
  int64_t live = 0;
  for (const int64_t l : s.descent->live) live += l;
  return live;
}

std::vector<int32_t> SoftRoundingObjective::Codes(std::span<const float> v) const {
  const State& s = *state_;
  const float max_code = static_cast<float>(s.grids.max_code);
  std::vector<int32_t> codes(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    codes[i] = static_cast<int32_t>(std::clamp(s.floor_level[i] + (v[i] >= 0.0f ? 1.0f : 0.0f), 0.0f, max_code));
  return codes;
}

std::vector<double> SoftRoundingObjective::UnitLosses(std::span<const int32_t> codes) {
  State& s = *state_;
  for (size_t i = 0; i < codes.size(); ++i)
    s.e[i] = DequantizeCode(codes[i], s.grids.step[i], static_cast<int32_t>(s.grids.zero[i])) - s.weight(static_cast<int64_t>(i));
  s.reconstruction.Loss(s.e.data());
  return s.reconstruction.unit_losses();
}

double TotalLoss(std::span<const double> unit_losses) {
  double loss = 0.0;
  for (const double l : unit_losses) loss += l;
  return loss;
}

double ReconstructionLoss(const RoundingProblem& problem, std::span<const int32_t> codes) {
  return TotalLoss(SoftRoundingObjective(problem).UnitLosses(codes));
}

bool KeepLearned(std::span<const double> initial_losses, std::span<const double> learned_losses) {
  return TotalLoss(learned_losses) < TotalLoss(initial_losses);
}

namespace {

// The rows' learned codes: Adam on the soft variables from their initial values, then [v ≥ 0].
std::vector<int32_t> Descend(const RoundingProblem& problem, RowRange rows, const AdaRoundOptions& options) {
  SoftRoundingObjective objective(problem, rows);
  // The gradient's products E·H with bfloat16 inputs: 1.8–2.5× the float32 GEMM's rate with
  // AVX-512 BF16 at AdaRound's tiles (about 0.7× without, emulated). Adam scales each step by the
  // gradient's running magnitude, and over 12 seeds of the aespa job the mean KL moved +0.1 %
  // (standard error 0.5 %: seed noise); the losses that choose between GPTQ's rounding and the
  // learned one stay float32 (docs/performance.md, "AdaRound's gradient in bfloat16").
  objective.SetBf16Products(true);
  const float lambda = static_cast<float>(options.lambda);
  const float learning_rate = static_cast<float>(options.learning_rate);
  for (int it = 0; it < options.iters; ++it) {
    const bool regularize = it >= options.warmup * options.iters;
    objective.AdamStep(regularize ? lambda : 0.0f, Beta(it, options), learning_rate, it + 1);
  }
  return objective.DescentCodes();
}

}  // namespace

int64_t UnitRows(const RoundingProblem& problem) {
  const int64_t rows = problem.weight->dim(0);
  return rows / static_cast<int64_t>(problem.output_weightings.empty() ? problem.hessians.size()
                                                                       : problem.output_weightings.size());
}

std::vector<RowRange> RoundingRowParts(const RoundingProblem& problem, int parts) {
  const int64_t rows = problem.weight->dim(0), unit_rows = UnitRows(problem);
  // Whole units where the weightings need them or there are enough to go round; else tiles of
  // the product, from each unit's first row.
  const bool whole_units = !problem.output_weightings.empty() || rows / unit_rows >= parts;
  const int64_t unit_steps = whole_units ? 1 : (unit_rows + kProductRows - 1) / kProductRows;
  const int64_t steps = rows / unit_rows * unit_steps, count = std::clamp<int64_t>(parts, 1, steps);
  const auto row_of = [&](int64_t step) {
    return step / unit_steps * unit_rows + std::min(unit_rows, step % unit_steps * (whole_units ? unit_rows : kProductRows));
  };
  std::vector<RowRange> ranges;
  for (int64_t p = 0; p < count; ++p) ranges.push_back({row_of(steps * p / count), row_of(steps * (p + 1) / count)});
  return ranges;
}

RoundingCandidates LearnRoundingCandidates(const RoundingProblem& problem, const AdaRoundOptions& options) {
  // One BLAS thread, whatever the parts: the library's threads can change a product's bits, and
  // a unit must get the same ones in every part, worker and pool (and their hand-offs cost more
  // than products this small).
  const kernels::SingleThreadedBlas one_blas_thread;
  SoftRoundingObjective whole(problem);
  RoundingCandidates candidates;
  candidates.initial_losses = whole.UnitLosses(problem.initial->codes);
  if (options.iters <= 0) {
    candidates.learned = problem.initial->codes;
    candidates.learned_losses = candidates.initial_losses;
    return candidates;
  }
  const std::vector<RowRange> parts = RoundingRowParts(problem, problem.pool == nullptr ? 1 : problem.pool->threads());
  candidates.learned.resize(problem.initial->codes.size());
  const int64_t in = problem.weight->dim(1);
  const auto descend = [&](int64_t p) {
    const std::vector<int32_t> codes = Descend(problem, parts[p], options);
    std::copy(codes.begin(), codes.end(), candidates.learned.begin() + parts[p].begin * in);
  };
  if (parts.size() == 1)
    descend(0);
  else
    problem.pool->ParallelFor(static_cast<int64_t>(parts.size()), descend);
  candidates.learned_losses = whole.UnitLosses(candidates.learned);
  return candidates;
}

RoundingResult LearnRounding(const RoundingProblem& problem, const AdaRoundOptions& options) {
  return ChooseRounding(LearnRoundingCandidates(problem, options), problem.initial->codes);
}

RoundingResult ChooseRounding(RoundingCandidates candidates, const std::vector<int32_t>& initial_codes) {
  RoundingResult result;
  result.initial_loss = result.loss = TotalLoss(candidates.initial_losses);
  result.learned = KeepLearned(candidates.initial_losses, candidates.learned_losses);
  if (result.learned) {
    result.codes = std::move(candidates.learned);
    result.loss = TotalLoss(candidates.learned_losses);
  } else {
    result.codes = initial_codes;
  }
  return result;
}

}  // namespace qshard
