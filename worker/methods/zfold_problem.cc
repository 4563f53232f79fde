#include "worker/methods/zfold_problem.h"

#include <map>

#include "kernels/cpu/blas.h"

namespace qshard {

WorkingHessian PrepareHessian(const HessianSum& sum, double damp) {
  WorkingHessian w;
  w.dim = sum.dim;
  w.h = sum.Normalized();
  w.dead.assign(w.dim, false);
  double mean_diagonal = 0.0;
  for (int64_t i = 0; i < w.dim; ++i) {
    double& d = w.h[i * w.dim + i];
    if (d == 0.0) {
      w.dead[i] = true;
      d = 1.0;
    }
    mean_diagonal += d;
  }
  mean_diagonal /= static_cast<double>(w.dim);
  for (int64_t i = 0; i < w.dim; ++i) w.h[i * w.dim + i] += damp * mean_diagonal;
  return w;
}

StackedRows StackRows(std::span<const StackPart> parts, double damp) {
  int64_t total = 0;
  for (const StackPart& p : parts) total += p.weight->dim(0);
  const int64_t in = parts.front().weight->dim(1);
  StackedRows stack;
  stack.weight = Tensor({total, in});
  std::map<const HessianSum*, std::shared_ptr<const WorkingHessian>> prepared;
  int64_t row = 0;
  for (const StackPart& p : parts) {
    const int64_t rows = p.weight->dim(0);
    std::copy_n(p.weight->data(), rows * in, stack.weight.row(row));
    const int64_t block_rows = rows / static_cast<int64_t>(p.hessians.size());
    for (const HessianSum* sum : p.hessians) {
      auto [it, inserted] = prepared.try_emplace(sum);
      if (inserted) it->second = std::make_shared<const WorkingHessian>(PrepareHessian(*sum, damp));
      stack.blocks.push_back({row, block_rows, it->second});
      for (int64_t r = row; r < row + block_rows; ++r)
        for (int64_t c = 0; c < in; ++c)
          if (it->second->dead[c]) stack.weight.at(r, c) = 0.0f;
      row += block_rows;
    }
  }
  return stack;
}

double HessianWeightedLoss(const StackedRows& stack, std::span<const float> zeta, const FixedGrids& grids,
                           int bits, int group_size) {
  const int64_t in = stack.cols(), out = stack.rows();
  const int32_t max_code = MaxCode(bits);
  double total = 0.0;
  for (const RowBlock& block : stack.blocks) {
    std::vector<double> delta(block.rows * in), product(block.rows * in);
    for (int64_t i = 0; i < block.rows; ++i) {
      const int64_t r = block.row_begin + i;
      for (int64_t c = 0; c < in; ++c) {
        const int64_t g = group_size > 0 ? c / group_size : 0;
        const float step = grids.scales[g * out + r] * (zeta.empty() ? 1.0f : zeta[c]);
        const int32_t zero = grids.zeros[g * out + r];
        const float w = stack.weight.at(r, c);
        delta[i * in + c] = static_cast<double>(DequantizeCode(QuantizeToCode(w, step, zero, max_code), step, zero)) - w;
      }
    }
    kernels::GemmF64(block.rows, in, in, delta.data(), false, block.hessian->h.data(), false, product.data());
    for (int64_t i = 0; i < block.rows * in; ++i) total += product[i] * delta[i];
  }
  return total;
}

}  // namespace qshard
