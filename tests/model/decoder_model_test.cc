// DecoderModel as the calibration code drives it: layer at a time (equal to the resident
// model, whatever the window batching), observers that see exactly what the linear layers
// see, and clear errors for bad checkpoints and bad input.
#include "worker/model/decoder_model.h"

#include <cmath>
#include <map>
#include <random>
#include <set>

#include "gtest/gtest.h"
#include "tests/model/golden_data.h"
#include "worker/model/layer_ops.h"
#include "worker/model/resident_model.h"

namespace qshard {
namespace {

constexpr char kTinyOpt[] = "tests/reference/forward/tiny-opt";
constexpr char kTinyOptPostLn[] = "tests/reference/forward/tiny-opt-post-ln";

struct Loaded {
  std::shared_ptr<CheckpointTensorSource> source;
  std::unique_ptr<DecoderModel> model;
};

Loaded LoadDecoder(const std::string& dir) {
  Loaded l;
  absl::StatusOr<std::shared_ptr<CheckpointTensorSource>> source = CheckpointTensorSource::Open(dir);
  EXPECT_TRUE(source.ok()) << source.status();
  if (!source.ok()) return l;
  l.source = *source;
  absl::StatusOr<std::unique_ptr<DecoderModel>> model = DecoderModel::Load(l.source, l.source->checkpoint().config());
  EXPECT_TRUE(model.ok()) << model.status();
  if (model.ok()) l.model = std::move(*model);
  return l;
}

std::vector<int32_t> RandomTokens(int64_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> tokens(n);
  for (int32_t& t : tokens) t = id(rng);
  return tokens;
}

double MaxAbsDiff(const Tensor& a, const Tensor& b) {
  double m = 0.0;
  for (int64_t i = 0; i < a.size(); ++i) m = std::max(m, static_cast<double>(std::fabs(a[i] - b[i])));
  return m;
}

class ModelDirTest : public ::testing::TestWithParam<std::string> {};

// Windows one at a time through Load + LoadLayer + RunLayer + Logits equal the resident
// model's batched forward over all windows.
TEST_P(ModelDirTest, LayerAtATimeEqualsResidentModel) {
  Loaded l = LoadDecoder(GetParam());
  ASSERT_NE(l.model, nullptr);
  const ModelConfig& c = l.model->config();
  const int64_t batch = 3, seq = 29;
  const std::vector<int32_t> tokens = RandomTokens(batch * seq, c.vocab_size, 11);
  absl::StatusOr<std::unique_ptr<ResidentModel>> resident = ResidentModel::Open(GetParam());
  ASSERT_TRUE(resident.ok()) << resident.status();
  absl::StatusOr<Tensor> expected = (*resident)->Forward(tokens, batch, seq);
  ASSERT_TRUE(expected.ok()) << expected.status();

  std::vector<Tensor> hidden;
  for (int64_t w = 0; w < batch; ++w) {
    absl::StatusOr<Tensor> h = l.model->Embed(absl::MakeConstSpan(tokens).subspan(w * seq, seq), 1, seq);
    ASSERT_TRUE(h.ok()) << h.status();
    hidden.push_back(std::move(*h));
  }
  for (int layer = 0; layer < c.num_layers; ++layer) {
    absl::StatusOr<DecoderLayerWeights> weights = l.model->LoadLayer(layer);
    ASSERT_TRUE(weights.ok()) << weights.status();
    for (Tensor& h : hidden) l.model->RunLayer(layer, *weights, h, 1, seq);
  }
  for (int64_t w = 0; w < batch; ++w) {
    const Tensor logits = l.model->Logits(hidden[w]);
    Tensor expected_window({seq, c.vocab_size},
                           std::vector<float>(expected->row(w * seq), expected->row((w + 1) * seq)));
    // The batched forward's GEMMs have 3× the rows, so BLAS may block and sum them in another
    // order: float32 rounding, bounded by 8 ulps of the largest logit (not an absolute 1e-5, which
    // OpenBLAS's kernels for one Xeon exceeded by 1 %).
    double largest = 0.0;
    for (float v : expected_window.values()) largest = std::max(largest, std::abs(static_cast<double>(v)));
    EXPECT_LT(MaxAbsDiff(logits, expected_window), 8 * 0x1p-23 * largest) << "window " << w << ", largest logit " << largest;
  }
}

INSTANTIATE_TEST_SUITE_P(Models, ModelDirTest,
                         ::testing::Values(std::string(testing::kTinyStoriesDir), std::string(kTinyOpt),
                                           std::string(kTinyOptPostLn)));

// Records everything an observer is shown.
class RecordingObserver : public LayerObserver {
 public:
  explicit RecordingObserver(bool wants_attention) : wants_attention_(wants_attention) {}
  void OnLinearInput(int layer, const std::string& linear, const Tensor& x) override {
    order.push_back(linear);
    inputs[{layer, linear}] = x;
  }
  bool WantsAttention(int layer) const override { return wants_attention_; }
  void OnAttention(int layer, const Tensor& p, const Tensor& q_in, const Tensor& k_in, int64_t b, int64_t s) override {
    probs[layer] = p;
    q[layer] = q_in;
    k[layer] = k_in;
    batch = b;
    seq = s;
  }

  std::vector<std::string> order;
  std::map<std::pair<int, std::string>, Tensor> inputs;
  std::map<int, Tensor> probs, q, k;
  int64_t batch = 0, seq = 0;

 private:
  bool wants_attention_;
};

// probs must be the causal softmax of the observed q and k (GQA-aware), rows summing to 1.
void ExpectProbsConsistentWithQk(const RecordingObserver& obs, int layer, const ModelConfig& c, double q_scale) {
  const Tensor& p = obs.probs.at(layer);
  const Tensor& q = obs.q.at(layer);
  const Tensor& k = obs.k.at(layer);
  const int64_t d = c.head_dim, s = obs.seq;
  double worst = 0.0;
  for (int64_t b = 0; b < obs.batch; ++b)
    for (int64_t h = 0; h < c.num_heads; ++h)
      for (int64_t i = 0; i < s; ++i) {
        const int64_t g = h / (c.num_heads / c.num_kv_heads);
        std::vector<double> score(s, 0.0);
        double max_score = -1e300, sum = 0.0;
        for (int64_t j = 0; j <= i; ++j) {
          for (int64_t e = 0; e < d; ++e) score[j] += static_cast<double>(q.at(b * s + i, h * d + e)) * k.at(b * s + j, g * d + e);
          score[j] *= q_scale;
          max_score = std::max(max_score, score[j]);
        }
        for (int64_t j = 0; j <= i; ++j) sum += std::exp(score[j] - max_score);
        for (int64_t j = 0; j < s; ++j) {
          const double expected = j <= i ? std::exp(score[j] - max_score) / sum : 0.0;
          worst = std::max(worst, std::fabs(p[((b * c.num_heads + h) * s + i) * s + j] - expected));
        }
      }
  EXPECT_LT(worst, 1e-5) << "layer " << layer;
}

TEST(DecoderModelTest, LlamaObserverSeesLinearInputsAndAttention) {
  Loaded l = LoadDecoder(testing::kTinyStoriesDir);
  ASSERT_NE(l.model, nullptr);
  const ModelConfig& c = l.model->config();
  const int64_t batch = 2, seq = 17, tokens = batch * seq;
  absl::StatusOr<Tensor> hidden = l.model->Embed(RandomTokens(tokens, c.vocab_size, 3), batch, seq);
  ASSERT_TRUE(hidden.ok());
  absl::StatusOr<DecoderLayerWeights> w = l.model->LoadLayer(1);
  ASSERT_TRUE(w.ok());
  const Tensor before = *hidden;
  RecordingObserver obs(/*wants_attention=*/true);
  l.model->RunLayer(1, *w, *hidden, batch, seq, &obs);

  EXPECT_EQ(obs.order, (std::vector<std::string>{"self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj"}));
  for (const auto& group : l.model->LinearGroups()) EXPECT_TRUE(obs.inputs.count({1, group[0]})) << group[0];
  const Tensor& x_q = obs.inputs.at({1, "self_attn.q_proj"});
  const Tensor& x_o = obs.inputs.at({1, "self_attn.o_proj"});
  const Tensor& x_gate = obs.inputs.at({1, "mlp.gate_proj"});
  const Tensor& x_down = obs.inputs.at({1, "mlp.down_proj"});
  EXPECT_EQ(x_q.shape(), (std::vector<int64_t>{tokens, c.hidden_size}));
  EXPECT_EQ(x_o.shape(), (std::vector<int64_t>{tokens, c.num_heads * c.head_dim}));
  EXPECT_EQ(x_gate.shape(), (std::vector<int64_t>{tokens, c.hidden_size}));
  EXPECT_EQ(x_down.shape(), (std::vector<int64_t>{tokens, c.intermediate_size}));
  EXPECT_EQ(obs.probs.at(1).shape(), (std::vector<int64_t>{batch, c.num_heads, seq, seq}));
  EXPECT_EQ(obs.q.at(1).shape(), (std::vector<int64_t>{tokens, c.num_heads * c.head_dim}));
  EXPECT_EQ(obs.k.at(1).shape(), (std::vector<int64_t>{tokens, c.num_kv_heads * c.head_dim}));
  EXPECT_EQ(obs.batch, batch);
  EXPECT_EQ(obs.seq, seq);
  ExpectProbsConsistentWithQk(obs, 1, c, 1.0 / std::sqrt(static_cast<double>(c.head_dim)));

  // The observed inputs are what the linears consume: the layer's input and output are tied
  // together through them (pre-norm residual structure).
  EXPECT_LT(MaxAbsDiff(x_q, RmsNorm(before, w->norm("input_layernorm.weight"), c.rms_norm_eps)), 1e-6);
  Tensor mid = before;
  AddInPlace(mid, ApplyLinear(x_o, w->linear("self_attn.o_proj")));
  EXPECT_LT(MaxAbsDiff(x_gate, RmsNorm(mid, w->norm("post_attention_layernorm.weight"), c.rms_norm_eps)), 1e-5);
  Tensor gate = ApplyLinear(x_gate, w->linear("mlp.gate_proj"));
  SiluMultiplyInPlace(gate, ApplyLinear(x_gate, w->linear("mlp.up_proj")));
  EXPECT_LT(MaxAbsDiff(x_down, gate), 1e-5);
  AddInPlace(mid, ApplyLinear(x_down, w->linear("mlp.down_proj")));
  EXPECT_LT(MaxAbsDiff(*hidden, mid), 1e-5);
}

TEST(DecoderModelTest, OptObserverSeesUnscaledQueryAndSkipsAttentionWhenNotWanted) {
  Loaded l = LoadDecoder(kTinyOpt);
  ASSERT_NE(l.model, nullptr);
  const ModelConfig& c = l.model->config();
  const int64_t batch = 2, seq = 13, tokens = batch * seq;
  absl::StatusOr<Tensor> embedded = l.model->Embed(RandomTokens(tokens, c.vocab_size, 4), batch, seq);
  ASSERT_TRUE(embedded.ok());
  absl::StatusOr<DecoderLayerWeights> w = l.model->LoadLayer(0);
  ASSERT_TRUE(w.ok());

  Tensor hidden = *embedded;
  RecordingObserver obs(/*wants_attention=*/true);
  l.model->RunLayer(0, *w, hidden, batch, seq, &obs);
  EXPECT_EQ(obs.order, (std::vector<std::string>{"self_attn.q_proj", "self_attn.out_proj", "fc1", "fc2"}));
  EXPECT_EQ(obs.inputs.at({0, "fc2"}).shape(), (std::vector<int64_t>{tokens, c.intermediate_size}));
  const Tensor& x_q = obs.inputs.at({0, "self_attn.q_proj"});
  EXPECT_LT(MaxAbsDiff(obs.q.at(0), ApplyLinear(x_q, w->linear("self_attn.q_proj"))), 1e-6);
  EXPECT_LT(MaxAbsDiff(obs.k.at(0), ApplyLinear(x_q, w->linear("self_attn.k_proj"))), 1e-6);
  ExpectProbsConsistentWithQk(obs, 0, c, 1.0 / std::sqrt(static_cast<double>(c.head_dim)));

  Tensor again = *embedded;
  RecordingObserver quiet(/*wants_attention=*/false);
  l.model->RunLayer(0, *w, again, batch, seq, &quiet);
  EXPECT_TRUE(quiet.probs.empty());
  EXPECT_EQ(quiet.order.size(), 4u);
  EXPECT_EQ(again.values(), hidden.values());
}

TEST(DecoderModelTest, LinearGroupsCoverEveryLinearOnce) {
  for (const std::string& dir : {std::string(testing::kTinyStoriesDir), std::string(kTinyOpt)}) {
    Loaded l = LoadDecoder(dir);
    ASSERT_NE(l.model, nullptr);
    absl::StatusOr<DecoderLayerWeights> w = l.model->LoadLayer(0);
    ASSERT_TRUE(w.ok());
    std::set<std::string> grouped;
    for (const auto& group : l.model->LinearGroups())
      for (const std::string& name : group) EXPECT_TRUE(grouped.insert(name).second) << name;
    std::set<std::string> loaded;
    for (const auto& [name, linear] : w->linears) loaded.insert(name);
    EXPECT_EQ(grouped, loaded) << dir;
    EXPECT_EQ(l.model->LinearGroups().size(), 4u);
  }
}

// A source that hides one tensor of another.
class HidingSource : public TensorSource {
 public:
  HidingSource(std::shared_ptr<const TensorSource> base, std::string hidden)
      : base_(std::move(base)), hidden_(std::move(hidden)) {}
  bool Has(const std::string& name) const override { return name != hidden_ && base_->Has(name); }
  absl::StatusOr<Tensor> Read(const std::string& name) const override {
    if (name == hidden_) return absl::NotFoundError("tensor '" + name + "' not found");
    return base_->Read(name);
  }

 private:
  std::shared_ptr<const TensorSource> base_;
  std::string hidden_;
};

TEST(DecoderModelTest, ErrorsNameTheTensorAtFault) {
  Loaded l = LoadDecoder(testing::kTinyStoriesDir);
  ASSERT_NE(l.model, nullptr);
  const ModelConfig& c = l.model->config();

  auto wrong_shape = std::make_shared<MemoryTensorSource>(l.source);
  wrong_shape->Set("model.layers.1.self_attn.k_proj.weight", Tensor({c.hidden_size, c.hidden_size}));
  absl::StatusOr<std::unique_ptr<DecoderModel>> model = DecoderModel::Load(wrong_shape, c);
  ASSERT_TRUE(model.ok());
  absl::StatusOr<DecoderLayerWeights> layer = (*model)->LoadLayer(1);
  ASSERT_FALSE(layer.ok());
  EXPECT_NE(layer.status().message().find("model.layers.1.self_attn.k_proj.weight"), absl::string_view::npos)
      << layer.status();
  EXPECT_FALSE((*model)->LoadLayer(2).ok());

  auto no_norm = std::make_shared<HidingSource>(l.source, "model.norm.weight");
  absl::StatusOr<std::unique_ptr<DecoderModel>> missing = DecoderModel::Load(no_norm, c);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("model.norm.weight"), absl::string_view::npos) << missing.status();

  // TinyStories stores its tied matrix only as lm_head.weight: untied, the embeddings are missing.
  ModelConfig untied = c;
  untied.tie_word_embeddings = false;
  absl::StatusOr<std::unique_ptr<DecoderModel>> no_embed = DecoderModel::Load(l.source, untied);
  ASSERT_FALSE(no_embed.ok());
  EXPECT_NE(no_embed.status().message().find("model.embed_tokens.weight"), absl::string_view::npos);

  absl::StatusOr<DecoderLayerWeights> good = l.model->LoadLayer(0);
  ASSERT_TRUE(good.ok());
  EXPECT_TRUE(l.model->ValidateLayer(*good).ok());
  DecoderLayerWeights bad = *good;
  bad.linears["mlp.up_proj"].bias = Tensor({c.intermediate_size});
  EXPECT_FALSE(l.model->ValidateLayer(bad).ok());
  bad = *good;
  bad.norms.erase("input_layernorm.weight");
  EXPECT_FALSE(l.model->ValidateLayer(bad).ok());

  EXPECT_FALSE(l.model->Embed({1, 2, 3}, 2, 2).ok());
  absl::StatusOr<Tensor> out_of_vocab = l.model->Embed({1, 2, static_cast<int32_t>(c.vocab_size)}, 1, 3);
  ASSERT_FALSE(out_of_vocab.ok());
  EXPECT_NE(out_of_vocab.status().message().find("2048"), absl::string_view::npos);
  EXPECT_FALSE(l.model->Embed({1, -1}, 1, 2).ok());
}

TEST(DecoderModelTest, OptRefusesWindowsBeyondLearnedPositions) {
  Loaded l = LoadDecoder(kTinyOpt);
  ASSERT_NE(l.model, nullptr);
  const int64_t max_positions = l.model->config().max_positions;
  EXPECT_TRUE(l.model->Embed(std::vector<int32_t>(max_positions, 3), 1, max_positions).ok());
  EXPECT_FALSE(l.model->Embed(std::vector<int32_t>(max_positions + 1, 3), 1, max_positions + 1).ok());
}

}  // namespace
}  // namespace qshard
