// Test helper for the method tests: TinyStories-656K's layer 0 fed real WikiText-2 token
// windows (tests/reference/forward/wikitext2_eval_head.i32), quantized group by group the way
// the job driver does — each group's statistics collected by running the layer as quantized
// so far — and the error of the layer's output against the unquantized layer.
#pragma once

#include <cmath>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/status.h"
#include "gtest/gtest.h"
#include "worker/calibration/attention_stats.h"
#include "worker/calibration/input_stats_collector.h"
#include "worker/methods/layer_method.h"
#include "worker/methods/method_registry.h"
#include "worker/calibration/observer_fanout.h"
#include "worker/model/decoder_model.h"

namespace qshard::real_layer {

// Forwards every hook to several observers.
struct RealLayer {
  std::unique_ptr<DecoderModel> model;
  DecoderLayerWeights weights;  // unquantized
  Tensor hidden;                // the layer's input, `batch` windows of `seq` tokens
  int64_t batch = 0, seq = 0;
};

// `count` real WikiText-2 token ids (TinyStories-656K's vocabulary).
inline std::vector<int32_t> WikiTextTokens(int64_t count) {
  const std::string path = "tests/reference/forward/wikitext2_eval_head.i32";
  std::ifstream ids(path, std::ios::binary);
  EXPECT_TRUE(ids.good()) << "missing " << path;
  std::vector<int32_t> tokens(count);
  ids.read(reinterpret_cast<char*>(tokens.data()), static_cast<std::streamsize>(count * sizeof(int32_t)));
  EXPECT_TRUE(ids.good()) << path << " holds fewer than " << count << " ids";
  return tokens;
}

inline std::vector<int32_t> RandomTokens(int64_t count, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> tokens(count);
  for (int32_t& t : tokens) t = token(rng);
  return tokens;
}

// Layer 0 of the model in `dir`, fed `tokens` as windows of `seq`.
inline RealLayer Load(const std::string& dir, const std::vector<int32_t>& tokens, int64_t seq) {
  RealLayer l;
  l.seq = seq;
  l.batch = static_cast<int64_t>(tokens.size()) / seq;
  auto config = LoadModelConfig(dir);
  EXPECT_TRUE(config.ok()) << dir << ": " << config.status();
  auto source = CheckpointTensorSource::Open(dir);
  EXPECT_TRUE(source.ok()) << dir << ": " << source.status();
  auto model = DecoderModel::Load(*source, *config);
  EXPECT_TRUE(model.ok()) << model.status();
  l.model = std::move(*model);
  auto weights = l.model->LoadLayer(0);
  EXPECT_TRUE(weights.ok()) << weights.status();
  l.weights = std::move(*weights);
  auto hidden = l.model->Embed(tokens, l.batch, seq);
  EXPECT_TRUE(hidden.ok()) << hidden.status();
  l.hidden = std::move(*hidden);
  return l;
}

// TinyStories-656K's layer 0 on `windows` WikiText-2 windows of `seq` tokens.
inline RealLayer LoadTinyStories(int64_t windows, int64_t seq) {
  return Load("../shared/data/tinystories-656k", WikiTextTokens(windows * seq), seq);
}

inline bool HasValueProjection(const std::vector<std::string>& group) {
  for (const std::string& name : group)
    if (name == "self_attn.v_proj") return true;
  return false;
}

// The method `options` names, from the registry.
inline std::unique_ptr<LayerMethod> Make(const MethodOptions& options) {
  auto registration = FindMethod(options.method);
  EXPECT_TRUE(registration.ok()) << registration.status();
  auto method = (*registration)->make(options);
  EXPECT_TRUE(method.ok()) << method.status();
  return method.ok() ? std::move(*method) : nullptr;
}

// One group's problem over `weights` and `quantized` with everything else unset.
inline GroupProblem Problem(const ModelConfig& config, std::vector<std::string> linears, const HessianSum* inputs,
                            const DecoderLayerWeights& weights, const QuantizedLayer& quantized) {
  GroupProblem problem;
  problem.config = &config;
  problem.linears = std::move(linears);
  problem.input_stats = inputs;
  problem.weights = &weights;
  problem.quantized = &quantized;
  return problem;
}

// Quantizes the first `max_groups` groups (all by default) of `weights` in place with the
// method `options` names.
inline absl::StatusOr<QuantizedLayer> Quantize(const MethodOptions& options, const RealLayer& l,
                                               DecoderLayerWeights& weights, size_t max_groups = 99) {
  QSHARD_ASSIGN_OR_RETURN(const MethodRegistration* registration, FindMethod(options.method));
  QSHARD_ASSIGN_OR_RETURN(std::unique_ptr<LayerMethod> method, registration->make(options));
  QuantizedLayer quantized;
  const std::vector<std::vector<std::string>> groups = l.model->LinearGroups();
  for (size_t g = 0; g < groups.size() && g < max_groups; ++g) {
    InputStatsCollector inputs(0, {groups[g].front()}, l.seq);
    AttentionStatsCollector attention(0, l.model->config());
    const bool wants_attention = registration->needs.attention_stats && HasValueProjection(groups[g]);
    ObserverFanOut observer(wants_attention ? std::vector<LayerObserver*>{&inputs, &attention}
                                    : std::vector<LayerObserver*>{&inputs});
    Tensor hidden = l.hidden;
    l.model->RunLayer(0, weights, hidden, l.batch, l.seq, &observer);
    std::map<std::string, HessianSum> sums = inputs.Take();
    const AttentionStats attention_stats = attention.Take();
    GroupProblem problem = Problem(l.model->config(), groups[g],
                                   registration->needs.input_stats ? &sums.at(groups[g].front()) : nullptr, weights,
                                   quantized);
    problem.attention = wants_attention ? &attention_stats : nullptr;
    QSHARD_ASSIGN_OR_RETURN(GroupSolution solution, method->SolveGroup(problem));
    QSHARD_RETURN_IF_ERROR(ApplyGroupSolution(std::move(solution), weights, quantized));
  }
  return quantized;
}

// ‖Δ_q − Δ‖² / ‖Δ‖² of the layer's contribution Δ = output − input.
inline double RelativeOutputError(const RealLayer& l, const DecoderLayerWeights& quantized) {
  Tensor reference = l.hidden, actual = l.hidden;
  l.model->RunLayer(0, l.weights, reference, l.batch, l.seq);
  l.model->RunLayer(0, quantized, actual, l.batch, l.seq);
  double error = 0.0, norm = 0.0;
  for (int64_t i = 0; i < reference.size(); ++i) {
    const double delta = double(reference[i]) - l.hidden[i];
    error += (double(actual[i]) - reference[i]) * (double(actual[i]) - reference[i]);
    norm += delta * delta;
  }
  return error / norm;
}

// What is exported is what the layer computes: every linear's installed weight is its
// dequantized GPTQ form, with no column scale left.
inline void ExpectExportMatchesLayer(const QuantizedLayer& quantized, const DecoderLayerWeights& weights) {
  for (const auto& [name, q] : quantized.linears) {
    EXPECT_TRUE(q.column_scale.empty()) << name;
    EXPECT_TRUE(q.Validate().ok()) << name;
    EXPECT_EQ(weights.linear(name).weight.values(), q.Dequantized().values()) << name;
  }
}

}  // namespace qshard::real_layer
