#include "worker/solvers/proxy_error.h"

#include <memory>
#include <vector>

#include "core/large_buffers.h"
#include "kernels/cpu/blas.h"

namespace qshard {

namespace {

// tr(X S Xᵀ)·2/tokens for x [rows, in] (row-major) against one sum S. The Gram matrix XᵀX by a
// float32 symmetric rank-k update costs half the float64 GEMM X·S (and runs at twice its rate);
// its upper triangle is weighted by the float64 sum S. The float32 Gram's rounding (relative
// ~1e-7 per entry) is far below what a reported error needs. `gram`: in² scratch.
double WeightedGramTrace(const float* x, int64_t rows, int64_t in, const HessianSum& hessian, float* gram) {
  kernels::SyrkUpperTransA(in, rows, x, gram);
  const double* s = hessian.sum.data();
  double diagonal = 0.0, off_diagonal = 0.0;
  for (int64_t i = 0; i < in; ++i) {
    diagonal += s[i * in + i] * gram[i * in + i];
    for (int64_t j = i + 1; j < in; ++j) off_diagonal += s[i * in + j] * gram[i * in + j];
  }
  return (diagonal + 2.0 * off_diagonal) * 2.0 / static_cast<double>(hessian.tokens);
}

std::unique_ptr<float[]> GramScratch(int64_t in) {
  std::unique_ptr<float[]> gram(new float[in * in]);  // upper triangle written by the update
  PopulatePages(gram.get(), in * in * sizeof(float));
  return gram;
}

}  // namespace

double ProxyError(const Tensor& weight, const Tensor& dequantized,
                  std::span<const HessianSum* const> hessians) {
  const int64_t out = weight.dim(0), in = weight.dim(1);
  const int64_t rows = out / static_cast<int64_t>(hessians.size());
  std::vector<float> delta(rows * in);
  const std::unique_ptr<float[]> gram = GramScratch(in);
  double total = 0.0;
  for (size_t b = 0; b < hessians.size(); ++b) {
    const int64_t offset = static_cast<int64_t>(b) * rows * in;
    for (int64_t i = 0; i < rows * in; ++i) delta[i] = weight[offset + i] - dequantized[offset + i];
    total += WeightedGramTrace(delta.data(), rows, in, *hessians[b], gram.get());
  }
  return total;
}

double ProxyEnergy(const Tensor& weight, const HessianSum& hessian) {
  const int64_t in = weight.dim(1);
  return WeightedGramTrace(weight.data(), weight.dim(0), in, hessian, GramScratch(in).get());
}

}  // namespace qshard
