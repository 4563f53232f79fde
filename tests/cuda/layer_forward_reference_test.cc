// The float64 layer that qshard_cuda_forward_check holds the device forward pass to
// (kernels/cuda/layer_forward_reference.h) must be the CPU forward pass's math, or the device
// check would test against something else than what the worker computes: the CPU layer
// (worker/model/decoder_layers.h) on the check's own shapes, window lengths and random weights,
// its output and its four group inputs against the reference, within the check's tolerances.
// Runs on the CPU only.
#include "kernels/cuda/layer_forward_reference.h"

#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "core/model_config.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "gtest/gtest.h"
#include "worker/model/decoder_layers.h"
#include "worker/model/decoder_model.h"
#include "worker/model/layer_spec.h"
#include "worker/model/rotary.h"

namespace qshard::gpu {
namespace {

ModelConfig ConfigOf(const LayerArchitecture& a) {
  ModelConfig c;
  c.arch = a.llama() ? Architecture::kLlama : Architecture::kOpt;
  c.hidden_size = a.hidden;
  c.intermediate_size = a.ffn;
  c.num_layers = 1;
  c.num_heads = a.heads;
  c.num_kv_heads = a.kv_heads;
  c.head_dim = a.head_dim;
  c.rms_norm_eps = c.layer_norm_eps = a.norm_eps;
  c.rope_theta = a.rope_theta;
  c.attention_bias = a.attention_bias;
  c.mlp_bias = a.mlp_bias;
  c.enable_bias = a.attention_bias;
  c.do_layer_norm_before = a.norm_before;
  return c;
}

Linear LinearOf(const HostLinear& h, int64_t out, int64_t in) {
  Linear linear;
  linear.weight = Tensor({out, in}, h.weight);
  if (!h.bias.empty()) linear.bias = Tensor({out}, h.bias);
  return linear;
}

DecoderLayerWeights WeightsOf(const HostLayer& l) {
  const LayerArchitecture& a = l.arch;
  const bool llama = a.llama();
  DecoderLayerWeights w;
  w.linears["self_attn.q_proj"] = LinearOf(l.q, a.q_width(), a.hidden);
  w.linears["self_attn.k_proj"] = LinearOf(l.k, a.kv_width(), a.hidden);
  w.linears["self_attn.v_proj"] = LinearOf(l.v, a.kv_width(), a.hidden);
  w.linears[llama ? "self_attn.o_proj" : "self_attn.out_proj"] = LinearOf(l.o, a.hidden, a.q_width());
  w.linears[llama ? "mlp.up_proj" : "fc1"] = LinearOf(l.up, a.ffn, a.hidden);
  if (llama) w.linears["mlp.gate_proj"] = LinearOf(l.gate, a.ffn, a.hidden);
  w.linears[llama ? "mlp.down_proj" : "fc2"] = LinearOf(l.down, a.hidden, a.ffn);
  const Tensor n1w({a.hidden}, l.norm1_weight), n2w({a.hidden}, l.norm2_weight);
  if (llama) {
    w.norms["input_layernorm.weight"] = n1w;
    w.norms["post_attention_layernorm.weight"] = n2w;
  } else {
    w.norms["self_attn_layer_norm.weight"] = n1w;
    w.norms["self_attn_layer_norm.bias"] = Tensor({a.hidden}, l.norm1_bias);
    w.norms["final_layer_norm.weight"] = n2w;
    w.norms["final_layer_norm.bias"] = Tensor({a.hidden}, l.norm2_bias);
  }
  return w;
}

class InputRecorder : public LayerObserver {
 public:
  void OnLinearInput(int layer, const std::string& linear, const Tensor& x) override {
    inputs[linear].assign(x.data(), x.data() + x.size());
  }
  std::map<std::string, std::vector<float>> inputs;
};

struct Param {
  ForwardCase forward;
  int64_t tokens;
};

void PrintTo(const Param& p, std::ostream* os) { *os << p.forward.name << ", " << p.tokens << " tokens"; }

std::vector<Param> Params() {
  std::vector<Param> params;
  for (const ForwardCase& c : ForwardCheckCases())
    for (int64_t tokens : c.tokens) params.push_back({c, tokens});
  return params;
}

class ReferenceAgainstCpuLayer : public ::testing::TestWithParam<Param> {};

TEST_P(ReferenceAgainstCpuLayer, OutputAndGroupInputsWithinTheDeviceCheckTolerances) {
  const Param& p = GetParam();
  const LayerArchitecture& a = p.forward.arch;
  ASSERT_TRUE(ValidateLayerArchitecture(a).ok());
  std::mt19937_64 rng(static_cast<uint64_t>(a.hidden * 1000 + p.tokens));
  const HostLayer layer = RandomHostLayer(a, rng);
  const std::vector<float> hidden = RandomHidden(p.tokens, a.hidden, rng);
  const ReferenceLayerResult reference = ReferenceLayerForward(layer, hidden, p.tokens);

  const ModelConfig config = ConfigOf(a);
  const std::vector<std::vector<std::string>> groups = DecoderLayerSpec(config).groups;
  std::vector<std::string> group_names;
  for (const auto& group : groups) group_names.push_back(group.front());
  ThreadPool pool(2);
  InputRecorder recorder;
  const RotaryEmbedding rotary(a.head_dim, a.rope_theta);
  const LayerRun run{config, 0, 1, p.tokens, pool, recorder, rotary};
  Tensor state({p.tokens, a.hidden}, hidden);
  RunDecoderLayer(run, WeightsOf(layer), group_names, state);

  const auto expect_close = [&](const std::string& what, const std::vector<float>& cpu, const std::vector<double>& ref) {
    const Deviation d = Compare(cpu, ref);
    RecordProperty(what + " max_over_rms", std::to_string(d.max_over_rms));
    RecordProperty(what + " relative_frobenius", std::to_string(d.relative_frobenius));
    std::printf("  %-18s max/rms %.2e  relative Frobenius %.2e\n", what.c_str(), d.max_over_rms, d.relative_frobenius);
    EXPECT_TRUE(WithinForwardTolerance(d)) << what << ": max/rms " << d.max_over_rms << ", relative Frobenius "
                                           << d.relative_frobenius;
  };
  for (int g = 0; g < kLayerGroupCount; ++g)
    expect_close(group_names[g], recorder.inputs[group_names[g]], reference.group_inputs[g]);
  expect_close("output", std::vector<float>(state.data(), state.data() + state.size()), reference.out);
}

// The tolerances must be able to fail: nudging one token's hidden state by ±0.01 (alternating
// over channels, so that LayerNorm does not remove it) moves the attention output of the rows
// that see it far outside them.
TEST(ReferenceAgainstCpuLayer, ToleranceCatchesAOneTokenChange) {
  const ForwardCase c = ForwardCheckCases().front();
  std::mt19937_64 rng(7);
  const HostLayer layer = RandomHostLayer(c.arch, rng);
  std::vector<float> hidden = RandomHidden(7, c.arch.hidden, rng);
  const ReferenceLayerResult reference = ReferenceLayerForward(layer, hidden, 7);
  for (int64_t i = 0; i < c.arch.hidden; ++i) hidden[3 * c.arch.hidden + i] += i % 2 == 0 ? 0.01f : -0.01f;
  const ReferenceLayerResult moved = ReferenceLayerForward(layer, hidden, 7);
  const std::vector<double>& attention = moved.group_inputs[1];
  const Deviation d = Compare(std::vector<float>(attention.begin(), attention.end()), reference.group_inputs[1]);
  std::printf("  one token nudged: max/rms %.2e  relative Frobenius %.2e\n", d.max_over_rms, d.relative_frobenius);
  EXPECT_GT(d.max_over_rms, 10 * kForwardMaxOverRms);
  EXPECT_GT(d.relative_frobenius, 10 * kForwardRelativeFrobenius);
}

INSTANTIATE_TEST_SUITE_P(Shapes, ReferenceAgainstCpuLayer, ::testing::ValuesIn(Params()),
                         [](const ::testing::TestParamInfo<Param>& info) {
                           std::string name = std::to_string(info.index) + "_" +
                                              (info.param.forward.arch.llama() ? "llama" : "opt") + "_" +
                                              std::to_string(info.param.tokens) + "_tokens";
                           return name;
                         });

}  // namespace
}  // namespace qshard::gpu
