// aespa as a layer method on TinyStories-656K's real layer 0 (calibrated on WikiText-2
// windows): the value projection's loss under its attention-aware Hessian H_V is lower than
// GPTQ's, and the whole layer quantizes into the plain exported GPTQ form.
#include <chrono>
#include <cstdio>

#include "gtest/gtest.h"
#include "tests/methods/real_layer.h"
#include "worker/methods/aespa_method.h"
#include "worker/methods/head_parts.h"
#include "worker/solvers/proxy_error.h"

namespace qshard {
namespace {

MethodOptions Options(const std::string& name, int bits, int adaround_iters) {
  MethodOptions options;
  options.method = name;
  options.spec.bits = bits;
  options.aespa_adaround_iters = adaround_iters;
  return options;
}

TEST(AespaMethodTest, ValueLossUnderHvBelowGptq) {
  const real_layer::RealLayer l = real_layer::LoadTinyStories(/*windows=*/8, /*seq=*/128);
  ASSERT_NE(l.model, nullptr);
  AttentionStatsCollector collector(0, l.model->config());
  Tensor hidden = l.hidden;
  l.model->RunLayer(0, l.weights, hidden, l.batch, l.seq, &collector);
  const AttentionStats stats = collector.Take();
  std::vector<const HessianSum*> h_v;
  for (const HessianSum& v : stats.values) h_v.push_back(&v);

  // v_proj's function after the [q, k, v] group: the stored W/ζ times the ζ folded into the norm.
  const auto value_loss = [&](const MethodOptions& method) {
    DecoderLayerWeights weights = l.weights;
    auto quantized = real_layer::Quantize(method, l, weights, /*max_groups=*/1);
    EXPECT_TRUE(quantized.ok()) << quantized.status();
    real_layer::ExpectExportMatchesLayer(*quantized, weights);
    Tensor effective = weights.linear("self_attn.v_proj").weight;
    const Tensor& gamma = l.weights.norm("input_layernorm.weight");
    const Tensor& folded = weights.norm("input_layernorm.weight");
    for (int64_t r = 0; r < effective.dim(0); ++r)
      for (int64_t c = 0; c < effective.dim(1); ++c) effective.at(r, c) *= folded[c] / gamma[c];
    return ProxyError(l.weights.linear("self_attn.v_proj").weight, effective, h_v);
  };
  for (int bits : {3, 2}) {
    const double gptq = value_loss(Options("gptq", bits, 0));
    const double zfold = value_loss(Options("zfold", bits, 0));
    const double no_adaround = value_loss(Options("aespa", bits, 0));
    const double aespa = value_loss(Options("aespa", bits, 2000));
    std::printf("v_proj loss under H_V, W%d: GPTQ %.5g, Z-Fold %.5g, aespa w/o AdaRound %.5g, aespa %.5g (%.1f%% below GPTQ)\n",
                bits, gptq, zfold, no_adaround, aespa, 100.0 * (1.0 - aespa / gptq));
    EXPECT_LT(aespa, gptq) << bits << " bits";
    EXPECT_LT(aespa, no_adaround) << bits << " bits";
  }
}

TEST(AespaMethodTest, QuantizesTheWholeLayer) {
  const real_layer::RealLayer l = real_layer::LoadTinyStories(/*windows=*/8, /*seq=*/128);
  ASSERT_NE(l.model, nullptr);
  for (const char* name : {"gptq", "aespa"}) {
    DecoderLayerWeights weights = l.weights;
    const auto start = std::chrono::steady_clock::now();
    auto quantized = real_layer::Quantize(Options(name, 3, 500), l, weights);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ASSERT_TRUE(quantized.ok()) << quantized.status();
    EXPECT_EQ(quantized->linears.size(), 7u);
    real_layer::ExpectExportMatchesLayer(*quantized, weights);
    std::printf("TinyStories layer 0, W3, %s: relative output error %.4g (%.2f s)\n", name,
                real_layer::RelativeOutputError(l, weights), seconds);
  }
  // Without attention statistics the attention group cannot be solved.
  DecoderLayerWeights weights = l.weights;
  QuantizedLayer quantized;
  HessianSum inputs(l.model->config().hidden_size);
  inputs.AddWindow(l.hidden.data(), l.seq);
  const GroupProblem problem =
      real_layer::Problem(l.model->config(), l.model->LinearGroups()[0], &inputs, weights, quantized);
  EXPECT_EQ(real_layer::Make(Options("aespa", 3, 0))->SolveGroup(problem).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// OPT: LayerNorm γ and β take ζ, biases are folded with their rows, attention has no RoPE;
// post-LN OPT (350M) leaves the q/k/v and fc1 inputs unfolded. Both methods must produce the
// exported form and beat round-to-nearest.
TEST(AespaMethodTest, QuantizesOptLayersWithAndWithoutPreNorm) {
  for (const char* dir : {"tests/reference/forward/tiny-opt", "tests/reference/forward/tiny-opt-post-ln"}) {
    const real_layer::RealLayer l = real_layer::Load(dir, real_layer::RandomTokens(6 * 48, 100, 9), 48);
    ASSERT_NE(l.model, nullptr);
    double errors[3];
    const char* methods[] = {"rtn", "zfold", "aespa"};
    for (int m = 0; m < 3; ++m) {
      DecoderLayerWeights weights = l.weights;
      auto quantized = real_layer::Quantize(Options(methods[m], 3, 500), l, weights);
      ASSERT_TRUE(quantized.ok()) << quantized.status();
      EXPECT_EQ(quantized->linears.size(), 6u);
      real_layer::ExpectExportMatchesLayer(*quantized, weights);
      errors[m] = real_layer::RelativeOutputError(l, weights);
      std::printf("%s layer 0, W3, %s: relative output error %.4g\n", dir, methods[m], errors[m]);
    }
    EXPECT_LT(errors[1], errors[0]) << dir;
    EXPECT_LT(errors[2], errors[0]) << dir;
  }
}

// TinyStories' layer 0 q/k/v group with its input and attention statistics.
struct AttentionGroup {
  real_layer::RealLayer l = real_layer::LoadTinyStories(/*windows=*/2, /*seq=*/64);
  std::vector<std::string> qkv;
  std::map<std::string, HessianSum> sums;
  AttentionStats attention_stats;
  QuantizedLayer quantized;
  GroupProblem problem;

  AttentionGroup() {
    if (l.model == nullptr) return;
    qkv = l.model->LinearGroups()[0];
    InputStatsCollector inputs(0, {qkv.front()}, l.seq);
    AttentionStatsCollector attention(0, l.model->config());
    ObserverFanOut observer({&inputs, &attention});
    Tensor hidden = l.hidden;
    l.model->RunLayer(0, l.weights, hidden, l.batch, l.seq, &observer);
    sums = inputs.Take();
    attention_stats = attention.Take();
    problem = real_layer::Problem(l.model->config(), qkv, &sums.at(qkv.front()), l.weights, quantized);
    problem.attention = &attention_stats;
  }
};

void ExpectSameWeight(const QuantizedWeight& a, const QuantizedWeight& b, const std::string& name) {
  EXPECT_EQ(a.codes, b.codes) << name;
  EXPECT_EQ(a.scales.values(), b.scales.values()) << name;
  EXPECT_EQ(a.zeros, b.zeros) << name;
  EXPECT_EQ(a.g_idx, b.g_idx) << name;
  EXPECT_EQ(a.column_scale, b.column_scale) << name;
}

// The attention group solved in two steps — the shared ζ search once, then its linears apart,
// as different workers solve them — is the one-step solve bit for bit.
TEST(AespaMethodTest, TwoStepSolveIsTheOneStepSolve) {
  const AttentionGroup g;
  ASSERT_NE(g.l.model, nullptr);
  const std::vector<std::string>& qkv = g.qkv;
  ASSERT_EQ(qkv.size(), 3u);
  const GroupProblem& problem = g.problem;

  const std::unique_ptr<LayerMethod> method = real_layer::Make(Options("aespa", 3, 40));
  auto whole = method->SolveGroup(problem);
  ASSERT_TRUE(whole.ok()) << whole.status();
  auto shared = method->SolveShared(problem);
  ASSERT_TRUE(shared.ok()) << shared.status();
  ASSERT_EQ(shared->rewrites.size(), whole->rewrites.size());
  for (size_t i = 0; i < whole->rewrites.size(); ++i) {
    EXPECT_EQ(shared->rewrites[i].name, whole->rewrites[i].name);
    EXPECT_EQ(shared->rewrites[i].value.values(), whole->rewrites[i].value.values());
  }
  for (const std::vector<std::string>& part : {std::vector<std::string>{qkv[1]}, {qkv[0], qkv[2]}}) {
    auto solved = method->SolveLinears(problem, *shared, part);
    ASSERT_TRUE(solved.ok()) << solved.status();
    EXPECT_TRUE(solved->rewrites.empty());
    ASSERT_EQ(solved->linears.size(), part.size());
    for (const std::string& name : part) ExpectSameWeight(solved->linears.at(name), whole->linears.at(name), name);
  }

  // A shared part that does not fit the layer (it may have crossed the network) is refused.
  SharedGroupPart broken = *shared;
  broken.grids.at(qkv[0]).zeros.pop_back();
  const std::vector<std::string> q = {qkv[0]}, v = {qkv[2]}, outside = {"mlp.down_proj"};
  EXPECT_EQ(method->SolveLinears(problem, broken, q).status().code(), absl::StatusCode::kInvalidArgument);
  broken = *shared;
  broken.column_scale.push_back(1.0f);
  EXPECT_EQ(method->SolveLinears(problem, broken, v).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(method->SolveLinears(problem, *shared, outside).ok());
}

// The three-step solve: q/k/v cut into runs of heads of awkward lengths (as workers get them),
// each solved apart, then joined — the one-step solve bit for bit, whichever rounding each
// linear keeps. A range outside the heads, or of a linear that does not split, is refused.
TEST(AespaMethodTest, HeadRangesJoinToTheOneStepSolve) {
  const AttentionGroup g;
  ASSERT_NE(g.l.model, nullptr);
  const ModelConfig& config = g.l.model->config();
  for (const int iters : {0, 40}) {
    const MethodOptions options = Options("aespa", 3, iters);
    const std::unique_ptr<LayerMethod> method = real_layer::Make(options);
    auto whole = method->SolveGroup(g.problem);
    ASSERT_TRUE(whole.ok()) << whole.status();
    auto shared = method->SolveShared(g.problem);
    ASSERT_TRUE(shared.ok()) << shared.status();
    std::map<std::string, int> heads;
    for (const std::string& name : g.qkv) heads[name] = AespaHeadsOf(config, options, name);
    if (iters == 0) {  // nothing per head without AdaRound
      for (const auto& [name, count] : heads) EXPECT_EQ(count, 0) << name;
      continue;
    }
    ASSERT_EQ(heads.at(g.qkv[0]), 8);
    ASSERT_EQ(heads.at(g.qkv[1]), 4);
    // Runs as three workers would get them, and one run of everything.
    const std::vector<std::vector<HeadRange>> workers = {
        {{g.qkv[0], 0, 3}}, {{g.qkv[0], 3, 5}, {g.qkv[1], 0, 1}}, {{g.qkv[1], 1, 3}, {g.qkv[2], 0, 4}}};
    std::vector<HeadsPart> parts;
    for (const std::vector<HeadRange>& ranges : workers) {
      auto solved = method->SolveHeads(g.problem, *shared, ranges);
      ASSERT_TRUE(solved.ok()) << solved.status();
      ASSERT_EQ(solved->size(), ranges.size());
      for (HeadsPart& part : *solved) parts.push_back(std::move(part));
    }
    auto joined = JoinHeads(std::move(parts), heads);
    ASSERT_TRUE(joined.ok()) << joined.status();
    ASSERT_EQ(joined->linears.size(), 3u);
    for (const std::string& name : g.qkv) ExpectSameWeight(joined->linears.at(name), whole->linears.at(name), name);
    ASSERT_EQ(joined->reports.size(), 3u);
    for (const LinearReport& report : joined->reports) {
      const LinearReport& one = *std::find_if(whole->reports.begin(), whole->reports.end(),
                                              [&](const LinearReport& r) { return r.name == report.name; });
      EXPECT_NEAR(report.relative_error, one.relative_error, 1e-5 * one.relative_error) << report.name;
      EXPECT_EQ(report.damp_used, one.damp_used) << report.name;
    }

    const std::vector<HeadRange> outside = {{g.qkv[1], 3, 2}}, unsplit = {{"mlp.up_proj", 0, 1}};
    EXPECT_EQ(method->SolveHeads(g.problem, *shared, outside).status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_FALSE(method->SolveHeads(g.problem, *shared, unsplit).ok());
  }
}

}  // namespace
}  // namespace qshard
