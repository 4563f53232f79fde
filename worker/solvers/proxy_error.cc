#include "worker/solvers/proxy_error.h"

#include <vector>

#include "kernels/cpu/blas.h"

namespace qshard {

double ProxyError(const Tensor& weight, const Tensor& dequantized,
                  std::span<const HessianSum* const> hessians) {
  const int64_t out = weight.dim(0), in = weight.dim(1);
  const int64_t rows = out / static_cast<int64_t>(hessians.size());
  std::vector<double> delta(rows * in), product(rows * in);
  double total = 0.0;
  for (size_t b = 0; b < hessians.size(); ++b) {
    const int64_t offset = static_cast<int64_t>(b) * rows * in;
    for (int64_t i = 0; i < rows * in; ++i)
      delta[i] = static_cast<double>(weight[offset + i]) - static_cast<double>(dequantized[offset + i]);
    kernels::GemmF64(rows, in, in, delta.data(), false, hessians[b]->sum.data(), false, product.data());
    double trace = 0.0;
    for (int64_t i = 0; i < rows * in; ++i) trace += product[i] * delta[i];
    total += trace * 2.0 / static_cast<double>(hessians[b]->tokens);
  }
  return total;
}

}  // namespace qshard
