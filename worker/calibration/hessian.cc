#include "worker/calibration/hessian.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/blas.h"

namespace qshard {

void HessianSum::AddWindow(const float* x, int64_t rows) {
  std::vector<float> window(dim * dim, 0.0f);
  kernels::SyrkTransA(dim, rows, x, window.data());
  for (int64_t i = 0; i < dim * dim; ++i) sum[i] += window[i];
  for (int64_t t = 0; t < rows; ++t)
    for (int64_t c = 0; c < dim; ++c) abs_max[c] = std::max(abs_max[c], std::fabs(x[t * dim + c]));
  tokens += rows;
}

absl::Status HessianSum::Merge(const HessianSum& other) {
  if (other.dim != dim)
    return absl::InvalidArgumentError(absl::StrCat("cannot merge Hessian sums of dims ", dim, " and ", other.dim));
  for (int64_t i = 0; i < dim * dim; ++i) sum[i] += other.sum[i];
  for (int64_t c = 0; c < dim; ++c) abs_max[c] = std::max(abs_max[c], other.abs_max[c]);
  tokens += other.tokens;
  return absl::OkStatus();
}

std::vector<double> HessianSum::Normalized() const {
  std::vector<double> h(sum.size());
  const double scale = tokens > 0 ? 2.0 / static_cast<double>(tokens) : 0.0;
  for (size_t i = 0; i < sum.size(); ++i) h[i] = sum[i] * scale;
  return h;
}

}  // namespace qshard
