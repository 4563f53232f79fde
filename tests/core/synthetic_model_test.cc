// Synthetic checkpoints: published parameter counts, real HF names/shapes/configs read back
// through Checkpoint, seeded determinism independent of sharding, weight statistics and the
// injected outlier channels, stand-in tokenizers, and the spec errors.
#include "core/synthetic_model.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>

#include "core/checkpoint.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/core/scoped_temp_dir.h"

namespace qshard {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using qshard::testing::ReadFileBytes;
using qshard::testing::ScopedTempDir;

constexpr char kSharedData[] = "../shared/data";

int64_t ParameterCount(const std::string& preset_name) {
  const SyntheticPreset preset = *FindSyntheticPreset(preset_name);
  int64_t count = 0;
  for (const TensorSpec& t : SyntheticTensorSpecs(preset, preset.num_layers, DType::kF16)) count += t.num_elements();
  return count;
}

TEST(SyntheticPresetTest, TensorsAddUpToThePublishedParameterCounts) {
  // The counts the model cards / transformers report for these models.
  EXPECT_EQ(ParameterCount("opt-125m"), 125'239'296);
  EXPECT_EQ(ParameterCount("opt-1.3b"), 1'315'758'080);
  EXPECT_EQ(ParameterCount("opt-6.7b"), 6'658'473'984);
  EXPECT_EQ(ParameterCount("llama-7b"), 6'738'415'616);
  EXPECT_EQ(ParameterCount("llama-70b"), 68'976'648'192);
  EXPECT_NEAR(ParameterCount("opt-66b") / 66e9, 1.0, 0.01);
  EXPECT_NEAR(ParameterCount("opt-175b") / 175e9, 1.0, 0.01);
}

TEST(SyntheticPresetTest, Llama70bUsesGroupedQueryAttention) {
  const SyntheticPreset preset = *FindSyntheticPreset("llama-70b");
  EXPECT_EQ(preset.num_heads, 64);
  EXPECT_EQ(preset.num_kv_heads, 8);
  EXPECT_EQ(preset.max_positions, 4096);
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const TensorSpec& t : SyntheticTensorSpecs(preset, 1, DType::kBF16)) shapes[t.name] = t.shape;
  EXPECT_EQ(shapes["model.layers.0.self_attn.q_proj.weight"], (std::vector<int64_t>{8192, 8192}));
  EXPECT_EQ(shapes["model.layers.0.self_attn.k_proj.weight"], (std::vector<int64_t>{1024, 8192}));
  EXPECT_EQ(shapes["model.layers.0.self_attn.v_proj.weight"], (std::vector<int64_t>{1024, 8192}));
  EXPECT_EQ(shapes["model.layers.0.mlp.down_proj.weight"], (std::vector<int64_t>{8192, 28672}));
}

TEST(SyntheticPresetTest, UnknownPresetListsTheKnownOnes) {
  const auto preset = FindSyntheticPreset("opt-13b");
  ASSERT_FALSE(preset.ok());
  EXPECT_THAT(std::string(preset.status().message()), HasSubstr("opt-125m, opt-1.3b, opt-6.7b, opt-66b, opt-175b"));
}

SyntheticSpec Spec(const std::string& preset, int64_t layers, const std::string& dir) {
  SyntheticSpec spec;
  spec.preset = preset;
  spec.num_layers = layers;
  spec.out_dir = dir;
  spec.shared_data_dir = kSharedData;
  return spec;
}

struct Moments {
  double mean = 0, std = 0, kurtosis = 0, beyond_3_std = 0;
};
Moments MomentsOf(const Tensor& t) {
  Moments m;
  for (float v : t.values()) m.mean += v;
  m.mean /= t.size();
  double m2 = 0, m4 = 0;
  for (float v : t.values()) {
    const double d = v - m.mean;
    m2 += d * d;
    m4 += d * d * d * d;
  }
  m2 /= t.size();
  m4 /= t.size();
  m.std = std::sqrt(m2);
  m.kurtosis = m4 / (m2 * m2);
  for (float v : t.values()) m.beyond_3_std += std::abs(v - m.mean) > 3 * m.std;
  m.beyond_3_std /= t.size();
  return m;
}

// Channels whose norm weight is far above 1: the injected outliers.
std::vector<int64_t> OutlierChannels(const Tensor& norm_weight) {
  std::vector<int64_t> channels;
  for (int64_t c = 0; c < norm_weight.size(); ++c)
    if (norm_weight[c] > 5.0f) channels.push_back(c);
  return channels;
}

TEST(SyntheticModelTest, Opt125mWithTwoLayers) {
  ScopedTempDir dir;
  ASSERT_TRUE(WriteSyntheticModel(Spec("opt-125m", 2, dir.path())).ok());
  auto ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  const ModelConfig& c = (*ckpt)->config();
  EXPECT_EQ(c.arch, Architecture::kOpt);
  EXPECT_EQ(c.model_type, "opt");
  EXPECT_EQ(c.hidden_size, 768);
  EXPECT_EQ(c.intermediate_size, 3072);
  EXPECT_EQ(c.num_layers, 2);
  EXPECT_EQ(c.num_heads, 12);
  EXPECT_EQ(c.num_kv_heads, 12);
  EXPECT_EQ(c.vocab_size, 50272);
  EXPECT_EQ(c.max_positions, 2048);
  EXPECT_EQ(c.word_embed_proj_dim, 768);
  EXPECT_TRUE(c.do_layer_norm_before);
  EXPECT_TRUE(c.enable_bias);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 2);
  EXPECT_EQ(c.eos_token_id, 2);
  EXPECT_THAT((*ckpt)->shard_files(), ElementsAre("model.safetensors"));

  const std::vector<std::string> names = (*ckpt)->TensorNames();
  EXPECT_EQ(names.size(), 2u + 2 * 16 + 2);
  for (const char* name : {"model.decoder.embed_tokens.weight", "model.decoder.final_layer_norm.bias",
                           "model.decoder.layers.1.self_attn.out_proj.bias", "model.decoder.layers.0.fc2.weight"})
    EXPECT_TRUE((*ckpt)->Has(name)) << name;
  EXPECT_FALSE((*ckpt)->Has("lm_head.weight"));  // tied to the embeddings, as published
  EXPECT_FALSE((*ckpt)->Has("model.decoder.layers.2.fc1.weight"));
  const auto shape = [&](const std::string& name) { return (*ckpt)->Info(name)->shape; };
  EXPECT_EQ(shape("model.decoder.embed_tokens.weight"), (std::vector<int64_t>{50272, 768}));
  EXPECT_EQ(shape("model.decoder.embed_positions.weight"), (std::vector<int64_t>{2050, 768}));
  EXPECT_EQ(shape("model.decoder.layers.0.fc1.weight"), (std::vector<int64_t>{3072, 768}));
  EXPECT_EQ(shape("model.decoder.layers.1.fc2.weight"), (std::vector<int64_t>{768, 3072}));
  EXPECT_EQ(shape("model.decoder.layers.1.self_attn.q_proj.bias"), (std::vector<int64_t>{768}));
  EXPECT_EQ((*ckpt)->Info("model.decoder.layers.0.fc1.bias")->dtype, DType::kF16);

  // config.json carries the keys transformers writes for OPT.
  const auto config = nlohmann::json::parse(ReadFileBytes(dir.Child("config.json")));
  EXPECT_EQ(config["architectures"], nlohmann::json({"OPTForCausalLM"}));
  EXPECT_EQ(config["torch_dtype"], "float16");
  EXPECT_EQ(config["ffn_dim"], 3072);
  EXPECT_EQ(config["pad_token_id"], 1);
  EXPECT_EQ(config["activation_function"], "relu");
  EXPECT_EQ(config["_remove_final_layer_norm"], false);

  // Stand-in tokenizer: GPT-2's files under their Hugging Face names, and the README says so.
  EXPECT_EQ(ReadFileBytes(dir.Child("vocab.json")), ReadFileBytes(std::string(kSharedData) + "/gpt2-tokenizer/encoder.json"));
  EXPECT_EQ(ReadFileBytes(dir.Child("merges.txt")), ReadFileBytes(std::string(kSharedData) + "/gpt2-tokenizer/vocab.bpe"));
  for (const char* file : {"tokenizer_config.json", "special_tokens_map.json", "generation_config.json"})
    EXPECT_FALSE(nlohmann::json::parse(ReadFileBytes(dir.Child(file)), nullptr, false).is_discarded()) << file;
  EXPECT_THAT(ReadFileBytes(dir.Child("README.md")), HasSubstr("STAND-IN"));
  EXPECT_THAT(ReadFileBytes(dir.Child("README.md")), HasSubstr("NOT A TRAINED MODEL"));

  // Weights: N(0, 0.02) (fp16-rounded); norms near 1 except ~1% outlier channels, the same
  // channels in both norms of both layers and none in the final norm.
  const Moments fc1 = MomentsOf(*(*ckpt)->ReadFloat("model.decoder.layers.0.fc1.weight"));
  EXPECT_NEAR(fc1.mean, 0.0, 1e-4);
  EXPECT_NEAR(fc1.std, 0.02, 0.0002);
  EXPECT_NEAR(fc1.kurtosis, 3.0, 0.05);
  EXPECT_NEAR(fc1.beyond_3_std, 0.0027, 0.0003);
  const std::vector<int64_t> outliers = OutlierChannels(*(*ckpt)->ReadFloat("model.decoder.layers.0.self_attn_layer_norm.weight"));
  EXPECT_EQ(outliers.size(), 7u);  // 1% of 768
  for (const char* norm : {"model.decoder.layers.0.final_layer_norm.weight", "model.decoder.layers.1.self_attn_layer_norm.weight",
                           "model.decoder.layers.1.final_layer_norm.weight"})
    EXPECT_EQ(OutlierChannels(*(*ckpt)->ReadFloat(norm)), outliers) << norm;
  const Tensor norm = *(*ckpt)->ReadFloat("model.decoder.layers.1.final_layer_norm.weight");
  for (int64_t ch = 0; ch < norm.size(); ++ch) {
    const bool outlier = std::find(outliers.begin(), outliers.end(), ch) != outliers.end();
    EXPECT_NEAR(norm[ch], outlier ? 20.0f : 1.0f, outlier ? 6.0f : 0.3f) << ch;
  }
  EXPECT_TRUE(OutlierChannels(*(*ckpt)->ReadFloat("model.decoder.final_layer_norm.weight")).empty());
}

TEST(SyntheticModelTest, Llama7bWithOneLayer) {
  ScopedTempDir dir;
  ASSERT_TRUE(WriteSyntheticModel(Spec("llama-7b", 1, dir.path())).ok());
  auto ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  const ModelConfig& c = (*ckpt)->config();
  EXPECT_EQ(c.arch, Architecture::kLlama);
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.intermediate_size, 11008);
  EXPECT_EQ(c.num_layers, 1);
  EXPECT_EQ(c.num_heads, 32);
  EXPECT_EQ(c.num_kv_heads, 32);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.vocab_size, 32000);
  EXPECT_EQ(c.max_positions, 2048);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_id, 2);

  EXPECT_THAT((*ckpt)->TensorNames(),
              ElementsAre("lm_head.weight", "model.embed_tokens.weight", "model.layers.0.input_layernorm.weight",
                          "model.layers.0.mlp.down_proj.weight", "model.layers.0.mlp.gate_proj.weight",
                          "model.layers.0.mlp.up_proj.weight", "model.layers.0.post_attention_layernorm.weight",
                          "model.layers.0.self_attn.k_proj.weight", "model.layers.0.self_attn.o_proj.weight",
                          "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.v_proj.weight",
                          "model.norm.weight"));
  EXPECT_EQ((*ckpt)->Info("lm_head.weight")->shape, (std::vector<int64_t>{32000, 4096}));
  EXPECT_EQ((*ckpt)->Info("model.layers.0.mlp.gate_proj.weight")->shape, (std::vector<int64_t>{11008, 4096}));
  EXPECT_EQ((*ckpt)->Info("model.layers.0.self_attn.k_proj.weight")->shape, (std::vector<int64_t>{4096, 4096}));
  EXPECT_EQ((*ckpt)->Info("model.layers.0.self_attn.k_proj.weight")->dtype, DType::kF16);

  const auto config = nlohmann::json::parse(ReadFileBytes(dir.Child("config.json")));
  EXPECT_EQ(config["architectures"], nlohmann::json({"LlamaForCausalLM"}));
  EXPECT_EQ(config["hidden_act"], "silu");
  EXPECT_TRUE(config["rope_scaling"].is_null());
  EXPECT_EQ(ReadFileBytes(dir.Child("tokenizer.json")),
            ReadFileBytes(std::string(kSharedData) + "/tinystories-656k/tokenizer.json"));
  EXPECT_THAT(ReadFileBytes(dir.Child("README.md")), HasSubstr("TinyStories-656K"));
  const std::vector<int64_t> outliers = OutlierChannels(*(*ckpt)->ReadFloat("model.layers.0.input_layernorm.weight"));
  EXPECT_EQ(outliers.size(), 40u);  // 1% of 4096
  EXPECT_EQ(OutlierChannels(*(*ckpt)->ReadFloat("model.layers.0.post_attention_layernorm.weight")), outliers);
}

// The stored bytes of tensor `name` in two checkpoints are identical.
bool SameTensorBytes(const Checkpoint& a, const Checkpoint& b, const std::string& name) {
  const auto bytes_a = (*a.FileOf(name))->Bytes(*a.Info(name));
  const auto bytes_b = (*b.FileOf(name))->Bytes(*b.Info(name));
  return std::equal(bytes_a.begin(), bytes_a.end(), bytes_b.begin(), bytes_b.end());
}

TEST(SyntheticModelTest, SameSeedSameValuesWhateverTheSharding) {
  ScopedTempDir dir;
  SyntheticSpec spec = Spec("opt-125m", 1, dir.Child("single"));
  ASSERT_TRUE(WriteSyntheticModel(spec).ok());
  spec.out_dir = dir.Child("sharded");
  spec.max_shard_bytes = 30 << 20;  // the 77 MB embedding alone, then positions + the layer
  ASSERT_TRUE(WriteSyntheticModel(spec).ok());
  spec.out_dir = dir.Child("other-seed");
  spec.seed = 1;
  ASSERT_TRUE(WriteSyntheticModel(spec).ok());

  auto single = Checkpoint::Open(dir.Child("single"));
  auto sharded = Checkpoint::Open(dir.Child("sharded"));
  auto other = Checkpoint::Open(dir.Child("other-seed"));
  ASSERT_TRUE(single.ok() && sharded.ok() && other.ok());
  EXPECT_THAT((*sharded)->shard_files(), ElementsAre("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"));
  EXPECT_TRUE(fs::exists(dir.Child("sharded/model.safetensors.index.json")));
  EXPECT_EQ(ReadFileBytes(dir.Child("single/config.json")), ReadFileBytes(dir.Child("sharded/config.json")));
  ASSERT_EQ((*single)->TensorNames(), (*sharded)->TensorNames());
  for (const std::string& name : (*single)->TensorNames()) {
    EXPECT_TRUE(SameTensorBytes(**single, **sharded, name)) << name;
    EXPECT_FALSE(SameTensorBytes(**single, **other, name)) << name;
  }
}

// Input columns whose values are on average far larger than the matrix's typical magnitude.
std::vector<int64_t> OutlierColumns(const Tensor& w) {
  std::vector<double> column(w.cols(), 0.0);
  double total = 0.0;
  for (int64_t r = 0; r < w.rows(); ++r)
    for (int64_t c = 0; c < w.cols(); ++c) column[c] += std::abs(w.at(r, c)), total += std::abs(w.at(r, c));
  std::vector<int64_t> outliers;
  for (int64_t c = 0; c < w.cols(); ++c)
    if (column[c] > 4.0 * total / w.cols()) outliers.push_back(c);
  return outliers;
}

TEST(SyntheticModelTest, WeightOutliersScaleOnePercentOfTheOutputProjectionsColumns) {
  ScopedTempDir dir;
  SyntheticSpec spec = Spec("opt-125m", 1, dir.Child("plain"));
  ASSERT_TRUE(WriteSyntheticModel(spec).ok());
  spec.out_dir = dir.Child("outliers");
  spec.weight_outliers = true;
  ASSERT_TRUE(WriteSyntheticModel(spec).ok());
  auto plain = Checkpoint::Open(dir.Child("plain"));
  auto outliers = Checkpoint::Open(dir.Child("outliers"));
  ASSERT_TRUE(plain.ok() && outliers.ok());
  for (const std::string& name : (*plain)->TensorNames()) {
    if (name.find("layers") == std::string::npos) continue;  // embeddings and final norm: drawn alike
    const bool output = name.find("out_proj.weight") != std::string::npos || name.find("fc2.weight") != std::string::npos;
    EXPECT_EQ(SameTensorBytes(**plain, **outliers, name), !output) << name;
    const Tensor w = *(*outliers)->ReadFloat(name);
    if (w.rank() != 2) continue;
    EXPECT_EQ(OutlierColumns(w).size(), output ? static_cast<size_t>(w.cols() / 100) : 0u) << name;
  }
  EXPECT_THAT(ReadFileBytes(dir.Child("outliers/README.md")), HasSubstr("Weight outliers: in out_proj and fc2"));
}

TEST(SyntheticModelTest, Float32OptionSetsTheTorchDtype) {
  ScopedTempDir dir;
  SyntheticSpec spec = Spec("opt-125m", 1, dir.path());
  spec.dtype = DType::kF32;
  spec.max_shard_bytes = 100 << 20;  // 190 MB of fp32: sharded
  ASSERT_TRUE(WriteSyntheticModel(spec).ok());
  auto ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ((*ckpt)->Info("model.decoder.layers.0.fc1.weight")->dtype, DType::kF32);
  EXPECT_EQ(nlohmann::json::parse(ReadFileBytes(dir.Child("config.json")))["torch_dtype"], "float32");
  EXPECT_GT((*ckpt)->shard_files().size(), 1u);
}

TEST(SyntheticModelTest, SpecErrorsAreClearAndWriteNothing) {
  ScopedTempDir dir;
  const auto message = [](const SyntheticSpec& spec) {
    const absl::Status status = WriteSyntheticModel(spec);
    EXPECT_FALSE(status.ok());
    return std::string(status.message());
  };
  EXPECT_THAT(message(Spec("gpt-5", 1, dir.Child("x"))), HasSubstr("unknown synthetic preset 'gpt-5'"));
  EXPECT_THAT(message(Spec("opt-125m", 0, dir.Child("x"))), HasSubstr("layer count 0 must be >= 1"));
  EXPECT_THAT(message(Spec("opt-125m", 1, "")), HasSubstr("no output directory"));
  SyntheticSpec int_dtype = Spec("opt-125m", 1, dir.Child("x"));
  int_dtype.dtype = DType::kI32;
  EXPECT_THAT(message(int_dtype), HasSubstr("dtype I32 is not one of F16, BF16, F32"));
  SyntheticSpec no_data = Spec("llama-7b", 1, dir.Child("x"));
  no_data.shared_data_dir = dir.Child("nowhere");
  EXPECT_THAT(message(no_data), HasSubstr("nowhere/tinystories-656k/tokenizer.json"));
  EXPECT_FALSE(fs::exists(dir.Child("x")));
}

}  // namespace
}  // namespace qshard
