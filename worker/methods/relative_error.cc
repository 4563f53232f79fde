#include <cmath>

#include "worker/methods/layer_method.h"
#include "worker/solvers/proxy_error.h"

namespace qshard {

double RelativeOutputError(const Tensor& weight, const Tensor& dequantized, const HessianSum& stats,
                           double proxy_error) {
  const HessianSum* hessians[] = {&stats};
  const double reference = ProxyEnergy(weight, stats);
  if (std::isnan(proxy_error)) proxy_error = ProxyError(weight, dequantized, hessians);
  return reference > 0.0 ? proxy_error / reference : 0.0;
}

}  // namespace qshard
