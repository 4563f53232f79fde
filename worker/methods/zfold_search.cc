#include "worker/methods/zfold_search.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/thread_pool.h"
#include "core/vector_clones.h"
#include "kernels/cpu/blas.h"
#include "worker/solvers/column_layout.h"

namespace qshard {
namespace {

constexpr int kClipSteps = 100;      // clip ratios 1.00, 0.99, ..., 0.01
constexpr int64_t kChunkRows = 256;  // rows whose search buffers are live at once

struct RowRange {
  float xmin = 0.0f, xmax = 0.0f;
};

// find_params' range: [min(x, 0), max(x, 0)], adjusted by NormalizeRange.
RowRange RangeOf(const double* x, int64_t n, const GridOptions& options) {
  RowRange r;
  for (int64_t j = 0; j < n; ++j) {
    r.xmin = std::min(r.xmin, static_cast<float>(x[j]));
    r.xmax = std::max(r.xmax, static_cast<float>(x[j]));
  }
  NormalizeRange(options, r.xmin, r.xmax);
  return r;
}

// The grid of clip step `step` with the zero point rounded down or up (aespa's floor/ceil
// candidates), made storable like GridForRange's.
AffineGrid Candidate(const RowRange& range, int step, bool ceil_zero, const GridOptions& options) {
  const float clip = static_cast<float>(1.0 - step / static_cast<double>(kClipSteps));
  return GridForNormalizedRange(clip * range.xmin, clip * range.xmax, options,
                                ceil_zero ? ZeroRounding::kCeil : ZeroRounding::kFloor);
}

// code − zero, the integer the step multiplies.
inline int32_t Offset(double x, const AffineGrid& grid, int32_t max_code) {
  return QuantizeToCode(static_cast<float>(x), grid.scale, grid.zero, max_code) - grid.zero;
}

// Offsets' loop, per vector width (a division, an add and a subtraction per element: every width
// rounds alike).
QSHARD_VECTOR_CLONES
void RoundedOffsets(const float* __restrict x, int64_t n, float scale, int32_t low, int32_t high,
                    int32_t* __restrict out) {
  constexpr float kRound = 12582912.0f;
  for (int64_t j = 0; j < n; ++j) {
    const int32_t rounded = static_cast<int32_t>((x[j] / scale + kRound) - kRound);
    out[j] = std::min(std::max(rounded, low), high);
  }
}

// Offset() for n values whose magnitudes are at most max_abs, without a libm call and with
// integer clamping so the loop vectorizes: adding and subtracting 1.5·2²³ rounds half to even
// like nearbyint for |v| < 2²². Candidates scale a range covering the row, so |x|/scale stays
// far below that; the scalar path is only a guard.
void Offsets(const float* x, int64_t n, float max_abs, const AffineGrid& grid, int32_t max_code, int32_t* out) {
  constexpr float kExact = 4194304.0f;
  if (!(max_abs / grid.scale < kExact)) {
    for (int64_t j = 0; j < n; ++j) out[j] = Offset(x[j], grid, max_code);
    return;
  }
  RoundedOffsets(x, n, grid.scale, -grid.zero, max_code - grid.zero, out);
}

// products += δ·a_row in double: the search's innermost loop, per vector width (with
// -ffp-contract=off for the file no width fuses the multiply-add, so all round alike).
QSHARD_VECTOR_CLONES
void AddScaledRow(double delta, const float* __restrict a_row, int64_t n, double* __restrict products) {
  for (int64_t k = 0; k < n; ++k) products[k] += delta * a_row[k];
}

// One group of one chunk of rows: everything the per-row candidate loops read.
struct GroupChunk {
  int64_t rows = 0, n = 0;
  int modes = 2;
  // H̃ restricted to the group [n, n], in float: each offset change streams one of its rows,
  // and that memory traffic is the search's cost (accumulation stays in double).
  std::vector<float> a;
  std::vector<double> x;          // [rows, n] W/ζ
  std::vector<float> x_float;     // the same in float, as quantization sees it
  std::vector<double> linear;     // [rows, n] H̃x minus the cross-group term
  std::vector<double> offsets[2]; // [rows, n] m at clip 1.00, per zero rounding
  std::vector<double> products[2];// [rows, n] H̃ m of the above
  std::vector<RowRange> ranges;
};

// The candidate loop of one row: clip steps outer, zero roundings inner (the reference's order,
// so ties go to the same candidate), scores updated incrementally as offsets change.
AffineGrid SearchRow(const GroupChunk& g, int64_t i, const GridOptions& options) {
  const int64_t n = g.n;
  const int32_t max_code = MaxCode(options.bits);
  const float* x = g.x_float.data() + i * n;
  const double* c = g.linear.data() + i * n;
  std::vector<int32_t> updated(n);
  std::vector<int32_t> m[2];
  std::vector<double> t[2];
  double quadratic[2] = {0.0, 0.0}, cross[2] = {0.0, 0.0};
  for (int mode = 0; mode < g.modes; ++mode) {
    m[mode].resize(n);
    t[mode].assign(g.products[mode].begin() + i * n, g.products[mode].begin() + (i + 1) * n);
    for (int64_t j = 0; j < n; ++j) {
      m[mode][j] = static_cast<int32_t>(g.offsets[mode][i * n + j]);
      quadratic[mode] += m[mode][j] * t[mode][j];
      cross[mode] += m[mode][j] * c[j];
    }
  }
  const float max_abs = std::max(-g.ranges[i].xmin, g.ranges[i].xmax);
  AffineGrid best;
  double best_score = std::numeric_limits<double>::infinity();
  for (int step = 0; step < kClipSteps; ++step) {
    for (int mode = 0; mode < g.modes; ++mode) {
      const AffineGrid grid = Candidate(g.ranges[i], step, mode == 1, options);
      if (step > 0) {
        int32_t* offsets = m[mode].data();
        double* products = t[mode].data();
        Offsets(x, n, max_abs, grid, max_code, updated.data());
        for (int64_t j = 0; j < n; ++j) {
          if (updated[j] == offsets[j]) continue;
          const float delta = static_cast<float>(updated[j] - offsets[j]);
          const float* a_row = g.a.data() + j * n;
          cross[mode] += delta * c[j];
          quadratic[mode] += delta * (2.0 * products[j] + static_cast<double>(delta) * a_row[j]);
          AddScaledRow(delta, a_row, n, products);
          offsets[j] = updated[j];
        }
      }
      const double scale = grid.scale;
      const double score = scale * scale * quadratic[mode] - 2.0 * scale * cross[mode];
      if (score < best_score) {
        best_score = score;
        best = grid;
      }
    }
  }
  return best;
}

// H̃ = diag(ζ) H diag(ζ).
std::vector<double> ScaledHessian(const WorkingHessian& h, std::span<const float> zeta) {
  std::vector<double> out = h.h;
  if (zeta.empty()) return out;
  for (int64_t r = 0; r < h.dim; ++r)
    for (int64_t c = 0; c < h.dim; ++c) out[r * h.dim + c] *= static_cast<double>(zeta[r]) * zeta[c];
  return out;
}

void CopyBlock(const double* src, int64_t src_cols, int64_t row0, int64_t col0, int64_t rows, int64_t cols,
               double* dst) {
  for (int64_t r = 0; r < rows; ++r) std::copy_n(src + (row0 + r) * src_cols + col0, cols, dst + r * cols);
}

// Searches rows [r0, r0 + rows) of one Hessian block, group by group.
void SearchChunk(const StackedRows& stack, std::span<const float> zeta, const std::vector<double>& h_tilde,
                 int64_t r0, int64_t rows, const QuantSpec& spec, ThreadPool* pool, FixedGrids& grids) {
  const GridOptions options = spec.grid_options();
  const int32_t max_code = MaxCode(options.bits);
  const int64_t in = stack.cols(), out = stack.rows();
  const int64_t group_size = spec.group_size > 0 ? spec.group_size : in;
  const int64_t groups = GroupCount(in, spec.group_size);

  std::vector<double> x(rows * in);  // W/ζ
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t c = 0; c < in; ++c)
      x[i * in + c] = static_cast<double>(stack.weight.at(r0 + i, c)) / (zeta.empty() ? 1.0 : zeta[c]);
  // ΔW/ζ at the current grids, for the cross-group terms.
  std::vector<double> delta;
  if (groups > 1) {
    delta.resize(rows * in);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t c = 0; c < in; ++c) {
        const int64_t at = (c / group_size) * out + r0 + i;
        const AffineGrid grid{grids.scales[at], grids.zeros[at]};
        delta[i * in + c] = static_cast<double>(grid.scale) * Offset(x[i * in + c], grid, max_code) - x[i * in + c];
      }
  }

  GroupChunk g;
  g.rows = rows;
  g.modes = options.sym ? 1 : 2;
  std::vector<double> a, h_columns;
  std::vector<AffineGrid> best(rows);
  for (int64_t group = 0; group < groups; ++group) {
    const int64_t c0 = group * group_size, n = std::min(group_size, in - c0);
    g.n = n;
    a.resize(n * n);
    CopyBlock(h_tilde.data(), in, c0, c0, n, n, a.data());
    g.a.assign(a.begin(), a.end());
    g.x.resize(rows * n);
    CopyBlock(x.data(), in, 0, c0, rows, n, g.x.data());
    g.x_float.assign(g.x.begin(), g.x.end());
    g.linear.resize(rows * n);
    kernels::GemmF64(rows, n, n, g.x.data(), false, a.data(), false, g.linear.data());
    if (groups > 1) {
      // linear −= Σ_{c outside the group} ΔW̃_c H̃[c, group]: the other groups' error.
      for (int64_t i = 0; i < rows; ++i) std::fill_n(delta.data() + i * in + c0, n, 0.0);
      h_columns.resize(in * n);
      CopyBlock(h_tilde.data(), in, 0, c0, in, n, h_columns.data());
      kernels::GemmF64(rows, n, in, delta.data(), false, h_columns.data(), false, g.linear.data(), -1.0, 1.0);
    }
    g.ranges.resize(rows);
    for (int64_t i = 0; i < rows; ++i) g.ranges[i] = RangeOf(g.x.data() + i * n, n, options);
    for (int mode = 0; mode < g.modes; ++mode) {
      g.offsets[mode].resize(rows * n);
      for (int64_t i = 0; i < rows; ++i) {
        const AffineGrid grid = Candidate(g.ranges[i], 0, mode == 1, options);
        for (int64_t j = 0; j < n; ++j) g.offsets[mode][i * n + j] = Offset(g.x[i * n + j], grid, max_code);
      }
      g.products[mode].resize(rows * n);
      kernels::GemmF64(rows, n, n, g.offsets[mode].data(), false, a.data(), false, g.products[mode].data());
    }
    const auto search_row = [&](int64_t i) { best[i] = SearchRow(g, i, options); };
    if (pool != nullptr) {
      pool->ParallelFor(rows, search_row);
    } else {
      for (int64_t i = 0; i < rows; ++i) search_row(i);
    }
    for (int64_t i = 0; i < rows; ++i) {
      grids.scales[group * out + r0 + i] = best[i].scale;
      grids.zeros[group * out + r0 + i] = best[i].zero;
      if (groups > 1)
        for (int64_t j = 0; j < n; ++j)
          delta[i * in + c0 + j] = static_cast<double>(best[i].scale) * Offset(g.x[i * n + j], best[i], max_code) -
                                   g.x[i * n + j];
    }
  }
}

// Least squares per channel: ζ = <Ŵ, W> / <Ŵ, Ŵ> over the channel's columns, with Ŵ the
// quantized W/ζ (the reference's find_zeta). A channel whose update is not a positive number
// keeps its value: ζ must stay > 0 to fold through ReLU and keep steps positive.
std::vector<float> UpdateZeta(const StackedRows& stack, const ZetaChannels& channels,
                              std::span<const float> channel_zeta, const FixedGrids& grids, const QuantSpec& spec) {
  const int64_t in = stack.cols(), out = stack.rows();
  const int32_t max_code = MaxCode(spec.bits);
  const std::vector<float> zeta = ColumnZeta(channels, channel_zeta);
  std::vector<double> num(channels.channels, 0.0), den(channels.channels, 0.0);
  for (int64_t r = 0; r < out; ++r)
    for (int64_t c = 0; c < in; ++c) {
      const int64_t at = (spec.group_size > 0 ? c / spec.group_size : 0) * out + r;
      const float w = stack.weight.at(r, c);
      const float scale = grids.scales[at];
      const double q = DequantizeCode(QuantizeToCode(w / zeta[c], scale, grids.zeros[at], max_code), scale,
                                      grids.zeros[at]);
      num[channels.channel_of_column[c]] += q * w;
      den[channels.channel_of_column[c]] += q * q;
    }
  std::vector<float> updated(channel_zeta.begin(), channel_zeta.end());
  for (int64_t ch = 0; ch < channels.channels; ++ch) {
    const float z = den[ch] > 0.0 ? static_cast<float>(num[ch] / den[ch]) : 0.0f;
    if (std::isfinite(z) && z > 0.0f) updated[ch] = z;
  }
  return updated;
}

}  // namespace

std::vector<float> ColumnZeta(const ZetaChannels& channels, std::span<const float> channel_zeta) {
  std::vector<float> zeta(channels.channel_of_column.size());
  for (size_t c = 0; c < zeta.size(); ++c) zeta[c] = channel_zeta[channels.channel_of_column[c]];
  return zeta;
}

FixedGrids MinMaxGrids(const StackedRows& stack, const QuantSpec& spec) {
  GridOptions options = spec.grid_options();
  options.mse_clip = false;
  const int64_t in = stack.cols(), out = stack.rows();
  std::vector<float> transposed(in * out);
  TransposeRows(stack.weight.data(), out, in, transposed.data());
  FixedGrids grids;
  grids.scales = Tensor({GroupCount(in, spec.group_size), out});
  grids.zeros.resize(grids.scales.size());
  FitGroupGrids(options, transposed.data(), in, out, spec.group_size, grids.scales.data(), grids.zeros.data(), out);
  return grids;
}

FixedGrids SearchGrids(const StackedRows& stack, std::span<const float> zeta, const QuantSpec& spec,
                       const FixedGrids& start, ThreadPool* pool) {
  FixedGrids grids = start;
  for (const RowBlock& block : stack.blocks) {
    const std::vector<double> h_tilde = ScaledHessian(*block.hessian, zeta);
    for (int64_t r0 = block.row_begin; r0 < block.row_begin + block.rows; r0 += kChunkRows)
      SearchChunk(stack, zeta, h_tilde, r0, std::min(kChunkRows, block.row_begin + block.rows - r0), spec, pool,
                  grids);
  }
  return grids;
}

ZfoldSolution SearchZfold(const StackedRows& stack, const QuantSpec& spec, int max_iters,
                          const ZetaChannels* channels, ThreadPool* pool) {
  ZfoldSolution best;
  best.grids = MinMaxGrids(stack, spec);
  if (channels != nullptr) best.channel_zeta.assign(channels->channels, 1.0f);
  best.initial_loss = best.loss = HessianWeightedLoss(stack, {}, best.grids, spec.bits, spec.group_size);
  if (channels == nullptr) {
    FixedGrids grids = SearchGrids(stack, {}, spec, best.grids, pool);
    const double loss = HessianWeightedLoss(stack, {}, grids, spec.bits, spec.group_size);
    if (loss <= best.loss) {
      best.grids = std::move(grids);
      best.loss = loss;
      best.iterations = 1;
    }
    return best;
  }
  for (int iteration = 1; iteration <= max_iters; ++iteration) {
    std::vector<float> channel_zeta = UpdateZeta(stack, *channels, best.channel_zeta, best.grids, spec);
    const std::vector<float> zeta = ColumnZeta(*channels, channel_zeta);
    FixedGrids grids = SearchGrids(stack, zeta, spec, best.grids, pool);
    const double loss = HessianWeightedLoss(stack, zeta, grids, spec.bits, spec.group_size);
    if (loss > best.loss) break;
    const bool lowered = loss < best.loss;
    best.channel_zeta = std::move(channel_zeta);
    best.grids = std::move(grids);
    best.loss = loss;
    best.iterations = iteration;
    if (!lowered) break;  // a fixed point: further alternations repeat it
  }
  return best;
}

}  // namespace qshard
