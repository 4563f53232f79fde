// FineQuant as a layer method: the linears of one group (one input, one fused module in
// loaders) share the finest of their own choices, each is RTN's weight at that size bit for
// bit, and a group of well-behaved matrices keeps the coarse grid.
#include "worker/methods/finequant_method.h"

#include <random>

#include "gtest/gtest.h"
#include "tests/methods/real_layer.h"
#include "worker/solvers/finequant.h"

namespace qshard {
namespace {

// q/k/v of a small layer with uniform weights (no refinement pays), k with outlier columns.
DecoderLayerWeights QkvWeights(bool k_outliers) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> uniform(-0.05f, 0.05f);
  DecoderLayerWeights weights;
  for (const char* name : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}) {
    Tensor w({96, 256});
    for (float& v : w.values()) v = uniform(rng);
    if (k_outliers && std::string(name) == "self_attn.k_proj")
      for (int64_t r = 0; r < 96; ++r) w.at(r, 100) *= 30.0f;
    weights.linears[name].weight = std::move(w);
  }
  return weights;
}

MethodOptions FineQuantOptions() {
  MethodOptions options;
  options.method = "finequant";
  options.spec.bits = 4;
  return options;
}

TEST(FineQuantMethodTest, AGroupSharesTheFinestChoiceAndEachLinearIsRtnAtIt) {
  const DecoderLayerWeights weights = QkvWeights(/*k_outliers=*/true);
  const MethodOptions options = FineQuantOptions();
  LayerProblem k;
  k.weight = &weights.linear("self_attn.k_proj").weight;
  auto k_alone = ChooseFineQuantGroupSize(k, options.spec);
  ASSERT_TRUE(k_alone.ok()) << k_alone.status();
  ASSERT_EQ(k_alone->group_size, kFineQuantMinGroupSize);

  ModelConfig config;
  QuantizedLayer quantized;
  const std::vector<std::string> qkv = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"};
  auto solution = real_layer::Make(options)->SolveGroup(real_layer::Problem(config, qkv, nullptr, weights, quantized));
  ASSERT_TRUE(solution.ok()) << solution.status();
  QuantSpec spec = options.spec;
  spec.group_size = kFineQuantMinGroupSize;
  auto rtn = MakeSolver("rtn", spec);
  ASSERT_TRUE(rtn.ok());
  for (const std::string& name : qkv) {
    LayerProblem problem;
    problem.weight = &weights.linear(name).weight;
    auto expected = (*rtn)->Solve(problem);
    ASSERT_TRUE(expected.ok()) << expected.status();
    const QuantizedWeight& got = solution->linears.at(name);
    EXPECT_EQ(got.groups(), 256 / kFineQuantMinGroupSize) << name;
    EXPECT_EQ(got.codes, expected->weight.codes) << name;
    EXPECT_EQ(got.zeros, expected->weight.zeros) << name;
    EXPECT_EQ(got.scales.values(), expected->weight.scales.values()) << name;
  }
  std::vector<const Tensor*> group;
  for (const std::string& name : qkv) group.push_back(&weights.linear(name).weight);
  EXPECT_EQ(FineQuantGroupSizeOf(group, options).value(), kFineQuantMinGroupSize);
}

TEST(FineQuantMethodTest, AWellBehavedGroupKeepsTheCoarseGrid) {
  const DecoderLayerWeights weights = QkvWeights(/*k_outliers=*/false);
  MethodOptions options = FineQuantOptions();
  std::vector<const Tensor*> group;
  for (const auto& [name, linear] : weights.linears) group.push_back(&linear.weight);
  EXPECT_EQ(FineQuantGroupSizeOf(group, options).value(), -1);
  options.spec.group_size = 128;
  EXPECT_EQ(FineQuantGroupSizeOf(group, options).value(), 128);
  options.spec.group_size = 0;
  EXPECT_FALSE(FineQuantGroupSizeOf(group, options).ok());
}

}  // namespace
}  // namespace qshard
