#include "worker/methods/layer_method.h"
#include "worker/solvers/proxy_error.h"

namespace qshard {

double RelativeOutputError(const Tensor& weight, const Tensor& dequantized, const HessianSum& stats) {
  const HessianSum* hessians[] = {&stats};
  const double reference = ProxyError(weight, Tensor(weight.shape()), hessians);
  return reference > 0.0 ? ProxyError(weight, dequantized, hessians) / reference : 0.0;
}

}  // namespace qshard
