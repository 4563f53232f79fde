// The proxy objective tr(ΔW H ΔWᵀ) and the energy tr(W H Wᵀ) against a float64 direct sum over
// the calibration tokens, on awkward sizes; the energy is ProxyError against a zero Ŵ bit for bit.
#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "tests/solvers/test_data.h"
#include "worker/solvers/proxy_error.h"

namespace qshard {
namespace {

// 2/tokens · Σ_t ‖D x_t‖² in float64.
double DirectObjective(const Tensor& d, const std::vector<float>& x, int64_t tokens) {
  const int64_t out = d.dim(0), in = d.dim(1);
  double total = 0.0;
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t r = 0; r < out; ++r) {
      double y = 0.0;
      for (int64_t c = 0; c < in; ++c) y += static_cast<double>(d.at(r, c)) * x[t * in + c];
      total += y * y;
    }
  return total * 2.0 / static_cast<double>(tokens);
}

TEST(ProxyErrorTest, EnergyAndErrorMatchDirectSums) {
  const int64_t out = 29, in = 71, tokens = 133;
  const Tensor w = testing::RandomWeight(out, in, 5);
  Tensor w_hat = testing::RandomWeight(out, in, 6);
  for (int64_t i = 0; i < w.size(); ++i) w_hat[i] = w[i] + 0.05f * w_hat[i];
  const std::vector<float> x = testing::CorrelatedActivations(tokens, in, 2, 7.0f, 9);
  const HessianSum h = testing::HessianOf(x, tokens, in);
  const HessianSum* hessians[] = {&h};

  const double energy = ProxyEnergy(w, h);
  EXPECT_EQ(energy, ProxyError(w, Tensor(w.shape()), hessians));
  EXPECT_NEAR(energy, DirectObjective(w, x, tokens), 1e-5 * energy);

  Tensor delta(w.shape());
  for (int64_t i = 0; i < w.size(); ++i) delta[i] = w[i] - w_hat[i];
  const double error = ProxyError(w, w_hat, hessians);
  EXPECT_NEAR(error, DirectObjective(delta, x, tokens), 1e-5 * error);
}

}  // namespace
}  // namespace qshard
