// The real TinyStories model quantized with GPTQ (W4, groups of 32, act-order, so g_idx is
// permuted) on synthetic Hessians, written as a GPTQ checkpoint, and evaluated three ways on the
// same few WikiText-2 windows: through the exact CPU kernels, through weights dequantized at
// load (BLAS), and through the int8-activation kernels. The first two must agree to float
// rounding; the third is measured by its KL from the exact path.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <random>

#include "core/checkpoint.h"
#include "core/model_config.h"
#include "core/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/core/scoped_temp_dir.h"
#include "worker/calibration/hessian.h"
#include "worker/eval/evaluate.h"
#include "worker/export/gptq_checkpoint_writer.h"
#include "worker/export/gptq_tensor_source.h"
#include "worker/model/resident_model.h"
#include "worker/solvers/solver.h"

namespace qshard {
namespace {

constexpr char kModel[] = "../shared/data/tinystories-656k";
constexpr char kText[] = "../shared/data/wikitext-2-raw/wiki.test.raw";

// H from Gaussian activations with channel scales spread over an order of magnitude, so that
// act-order visits the columns in a scrambled order.
HessianSum SyntheticHessian(int64_t in, std::mt19937& rng) {
  constexpr int64_t kTokens = 96;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> scale(in), x(kTokens * in);
  for (float& s : scale) s = std::exp(normal(rng));
  for (int64_t t = 0; t < kTokens; ++t)
    for (int64_t i = 0; i < in; ++i) x[t * in + i] = normal(rng) * scale[i];
  HessianSum h(in);
  h.AddWindow(x.data(), kTokens);
  return h;
}

void WriteGptqCheckpoint(const std::string& out) {
  auto model = ResidentModel::Open(kModel);
  ASSERT_TRUE(model.ok()) << model.status() << " (needs " << kModel << ")";
  auto source = Checkpoint::Open(kModel);
  ASSERT_TRUE(source.ok()) << source.status();
  QuantSpec spec;
  spec.bits = 4;
  spec.group_size = 32;
  spec.act_order = true;
  auto solver = MakeSolver("gptq", spec);
  ASSERT_TRUE(solver.ok()) << solver.status();
  GptqExportSpec export_spec;
  export_spec.bits = spec.bits;
  export_spec.group_size = spec.group_size;
  export_spec.desc_act = true;
  auto writer = GptqCheckpointWriter::Create(out, **source, (*model)->decoder(), export_spec, {});
  ASSERT_TRUE(writer.ok()) << writer.status();
  std::mt19937 rng(5);
  for (int layer = 0; layer < (*model)->config().num_layers; ++layer) {
    std::map<std::string, QuantizedWeight> quantized;
    for (const LinearSpec& l : (*model)->decoder().layer_spec().linears) {
      const HessianSum hessian = SyntheticHessian(l.in_features, rng);
      LayerProblem problem;
      problem.name = l.name;
      problem.weight = &(*model)->layer(layer).linear(l.name).weight;
      problem.hessians = {&hessian};
      auto result = (*solver)->Solve(problem);
      ASSERT_TRUE(result.ok()) << result.status();
      quantized.emplace(l.name, std::move(result->weight));
    }
    ASSERT_TRUE((*writer)->WriteLayer(layer, (*model)->layer(layer), quantized).ok());
  }
  ASSERT_TRUE((*writer)->Finish(nlohmann::json::object()).ok());
}

std::unique_ptr<ResidentModel> LoadWith(const std::string& dir, GptqLinearMode mode) {
  auto checkpoint = Checkpoint::Open(dir);
  EXPECT_TRUE(checkpoint.ok()) << checkpoint.status();
  if (!checkpoint.ok()) return nullptr;
  auto source = GptqTensorSource::Create(std::shared_ptr<const Checkpoint>(*std::move(checkpoint)), {mode, 2});
  EXPECT_TRUE(source.ok()) << source.status();
  auto config = LoadModelConfig(dir);
  EXPECT_TRUE(config.ok()) << config.status();
  if (!source.ok() || !config.ok()) return nullptr;
  auto model = ResidentModel::Load(*std::move(source), *config);
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return nullptr;
  (*model)->SetThreads(2);
  return *std::move(model);
}

TEST(GptqKernelEvalTest, ExactKernelsMatchTheDequantizedModelAndInt8IsClose) {
  testing::ScopedTempDir dir;
  const std::string out = dir.Child("w4");
  WriteGptqCheckpoint(out);
  if (HasFatalFailure()) return;

  {  // act-order took effect: the kernels must honour a permuted g_idx
    auto checkpoint = Checkpoint::Open(out);
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
    auto source = GptqTensorSource::Create(std::shared_ptr<const Checkpoint>(*std::move(checkpoint)));
    ASSERT_TRUE(source.ok()) << source.status();
    auto packed = (*source)->ReadPacked("model.layers.0.self_attn.q_proj.weight");
    ASSERT_TRUE(packed.ok()) << packed.status();
    EXPECT_FALSE(std::is_sorted(packed->g_idx.begin(), packed->g_idx.end()));
  }
  const std::unique_ptr<ResidentModel> exact = LoadWith(out, GptqLinearMode::kExact);
  const std::unique_ptr<ResidentModel> dequantized = LoadWith(out, GptqLinearMode::kDequantize);
  const std::unique_ptr<ResidentModel> int8 = LoadWith(out, GptqLinearMode::kInt8);
  ASSERT_TRUE(exact && dequantized && int8);
  EXPECT_NE(exact->layer(0).linear("self_attn.q_proj").kernel, nullptr) << "exact path must not dequantize";
  EXPECT_EQ(exact->layer(0).linear("self_attn.q_proj").weight.size(), 0);
  EXPECT_EQ(dequantized->layer(0).linear("self_attn.q_proj").kernel, nullptr);

  auto tokenizer = Tokenizer::FromModelDir(kModel);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  std::ifstream in(kText);
  std::string text(std::istreambuf_iterator<char>(in), {});
  text.resize(std::min<size_t>(text.size(), 20000));  // a few windows' worth
  auto tokens = tokenizer->Encode(text);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EvalOptions options;
  options.seqlen = 256;
  options.max_windows = 3;
  auto through_kernels = Evaluate(*exact, *tokens, options, dequantized.get());
  ASSERT_TRUE(through_kernels.ok()) << through_kernels.status();
  ASSERT_EQ(through_kernels->windows, 3);
  auto through_int8 = Evaluate(*int8, *tokens, options, exact.get());
  ASSERT_TRUE(through_int8.ok()) << through_int8.status();
  std::cout << "perplexity exact kernels " << through_kernels->perplexity << ", dequantized "
            << through_kernels->base_perplexity << ", KL " << through_kernels->kl_divergence << "; int8 kernels "
            << through_int8->perplexity << ", KL(exact || int8) " << through_int8->kl_divergence << ", top-1 "
            << through_int8->top1_agreement << std::endl;

  // Float rounding only: fp32 sums in another order. A wrong code, scale or g_idx in any linear
  // moves the perplexity by far more than 1e-5 relative.
  EXPECT_NEAR(through_kernels->perplexity, through_kernels->base_perplexity, 1e-5 * through_kernels->base_perplexity);
  EXPECT_LT(through_kernels->kl_divergence, 1e-8);
  EXPECT_GE(through_kernels->top1_agreement, 0.995);  // a near-tie may flip under rounding
  // Int8 activations are an approximation: a small, nonzero divergence from the exact path.
  EXPECT_GT(through_int8->kl_divergence, 0.0);
  EXPECT_LT(through_int8->kl_divergence, 0.05);
}

}  // namespace
}  // namespace qshard
