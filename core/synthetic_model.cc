#include "core/synthetic_model.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/atomic_file.h"
#include "core/safetensors_writer.h"
#include "core/status.h"
#include "nlohmann/json.hpp"

namespace qshard {
namespace {

using nlohmann::json;

constexpr double kInitStd = 0.02;  // the configs' initializer_range / init_std
constexpr float kNormNoiseStd = 0.05f;
constexpr float kOutlierScale = 20.0f;
constexpr int64_t kOutlierPercent = 1;
constexpr float kWeightOutlierScale = 10.0f;
// Values are generated and handed to the writer this many at a time (4 MB of floats).
constexpr int64_t kChunkElements = int64_t{1} << 20;

// How a tensor's values are drawn.
enum class Init {
  kNormal,            // N(0, kInitStd): linear weights, biases, embeddings
  kNormWeight,        // 1 + N(0, kNormNoiseStd)
  kOutlierNormWeight,  // the same, with the outlier channels scaled by kOutlierScale
  kOutlierColumns      // kNormal with kOutlierPercent of the input columns scaled by kWeightOutlierScale
};

struct SyntheticTensor {
  TensorSpec spec;
  Init init;
};

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Every tensor draws from its own stream keyed by (seed, name), so its values do not depend on
// the order tensors are written in, on chunking, or on sharding.
uint64_t StreamKey(uint64_t seed, std::string_view name) {
  uint64_t hash = 0xCBF29CE484222325ull;  // FNV-1a
  for (char c : name) hash = (hash ^ static_cast<uint8_t>(c)) * 0x100000001B3ull;
  uint64_t state = seed ^ hash;
  return SplitMix64(state);
}

// Standard normal deviates by Marsaglia and Tsang's ziggurat (128 layers) over SplitMix64:
// ~99% of draws cost one table lookup and one multiply, which matters when a test writes a
// billion values. The layer index and the value come from disjoint bits of each draw.
class NormalStream {
 public:
  explicit NormalStream(uint64_t key) : state_(key) {}

  float Next() {
    const Tables& t = tables();
    for (;;) {
      const uint64_t bits = SplitMix64(state_);
      const int64_t value = static_cast<int32_t>(bits >> 32);
      const int layer = static_cast<int>(bits & 127);
      const double x = value * t.w[layer];
      if (std::abs(value) < t.k[layer]) return static_cast<float>(x);
      if (layer == 0) return static_cast<float>(Tail(value > 0));
      // Wedge: accept with the density's probability between the layer's edges.
      if (t.f[layer] + Uniform() * (t.f[layer - 1] - t.f[layer]) < std::exp(-0.5 * x * x))
        return static_cast<float>(x);
    }
  }

 private:
  static constexpr double kR = 3.442619855899;  // where the base layer's tail starts
  struct Tables {
    double k[128], w[128], f[128];
    Tables() {
      constexpr double m = 2147483648.0;  // 2^31: values are signed 32-bit integers
      constexpr double area = 9.91256303526217e-3;
      double d = kR, previous = kR;
      const double q = area / std::exp(-0.5 * d * d);
      k[0] = d / q * m;
      k[1] = 0;
      w[0] = q / m;
      w[127] = d / m;
      f[0] = 1.0;
      f[127] = std::exp(-0.5 * d * d);
      for (int i = 126; i >= 1; --i) {
        d = std::sqrt(-2.0 * std::log(area / d + std::exp(-0.5 * d * d)));
        k[i + 1] = d / previous * m;
        previous = d;
        f[i] = std::exp(-0.5 * d * d);
        w[i] = d / m;
      }
    }
  };
  static const Tables& tables() {
    static const Tables t;
    return t;
  }
  double Uniform() { return static_cast<double>((SplitMix64(state_) >> 11) + 1) * 0x1p-53; }  // (0, 1]
  // Marsaglia's exact sampler for the normal tail beyond kR.
  double Tail(bool positive) {
    double x, y;
    do {
      x = -std::log(Uniform()) / kR;
      y = -std::log(Uniform());
    } while (y + y < x * x);
    return positive ? kR + x : -kR - x;
  }

  uint64_t state_;
};

// kOutlierPercent of the hidden channels (at least one), drawn from the stream `stream`: with
// "outlier channels", the same in every layer as in real OPT/LLaMA models, whose activation
// outliers sit in a few fixed dimensions.
std::vector<bool> OutlierChannels(int64_t hidden, uint64_t seed, std::string_view stream = "outlier channels") {
  const int64_t count = std::max<int64_t>(1, hidden * kOutlierPercent / 100);
  std::vector<int64_t> order(hidden);
  std::iota(order.begin(), order.end(), 0);
  uint64_t state = StreamKey(seed, stream);
  for (int64_t i = 0; i < count; ++i)
    std::swap(order[i], order[i + static_cast<int64_t>(SplitMix64(state) % static_cast<uint64_t>(hidden - i))]);
  std::vector<bool> outlier(hidden, false);
  for (int64_t i = 0; i < count; ++i) outlier[order[i]] = true;
  return outlier;
}

std::vector<SyntheticTensor> OptTensors(const SyntheticPreset& p, int64_t layers, DType dtype, Init outputs) {
  const int64_t d = p.hidden_size, ffn = p.intermediate_size;
  std::vector<SyntheticTensor> t;
  const auto add = [&](std::string name, std::vector<int64_t> shape, Init init) {
    t.push_back({{std::move(name), dtype, std::move(shape)}, init});
  };
  add("model.decoder.embed_tokens.weight", {p.vocab_size, d}, Init::kNormal);
  // OPT's learned positions start at offset 2 (a fairseq legacy), hence two extra rows.
  add("model.decoder.embed_positions.weight", {p.max_positions + 2, d}, Init::kNormal);
  for (int64_t i = 0; i < layers; ++i) {
    const std::string layer = absl::StrCat("model.decoder.layers.", i, ".");
    for (const char* proj : {"k_proj", "v_proj", "q_proj", "out_proj"}) {
      add(absl::StrCat(layer, "self_attn.", proj, ".weight"), {d, d},
          std::string_view(proj) == "out_proj" ? outputs : Init::kNormal);
      add(absl::StrCat(layer, "self_attn.", proj, ".bias"), {d}, Init::kNormal);
    }
    add(layer + "self_attn_layer_norm.weight", {d}, Init::kOutlierNormWeight);  // feeds q, k, v
    add(layer + "self_attn_layer_norm.bias", {d}, Init::kNormal);
    add(layer + "fc1.weight", {ffn, d}, Init::kNormal);
    add(layer + "fc1.bias", {ffn}, Init::kNormal);
    add(layer + "fc2.weight", {d, ffn}, outputs);
    add(layer + "fc2.bias", {d}, Init::kNormal);
    add(layer + "final_layer_norm.weight", {d}, Init::kOutlierNormWeight);  // feeds fc1
    add(layer + "final_layer_norm.bias", {d}, Init::kNormal);
  }
  add("model.decoder.final_layer_norm.weight", {d}, Init::kNormWeight);
  add("model.decoder.final_layer_norm.bias", {d}, Init::kNormal);
  return t;  // lm_head is tied to embed_tokens and not stored, as in the published checkpoints
}

std::vector<SyntheticTensor> LlamaTensors(const SyntheticPreset& p, int64_t layers, DType dtype, Init outputs) {
  const int64_t d = p.hidden_size, ffn = p.intermediate_size, head_dim = p.hidden_size / p.num_heads;
  const int64_t q_rows = p.num_heads * head_dim, kv_rows = p.num_kv_heads * head_dim;
  std::vector<SyntheticTensor> t;
  const auto add = [&](std::string name, std::vector<int64_t> shape, Init init) {
    t.push_back({{std::move(name), dtype, std::move(shape)}, init});
  };
  add("model.embed_tokens.weight", {p.vocab_size, d}, Init::kNormal);
  for (int64_t i = 0; i < layers; ++i) {
    const std::string layer = absl::StrCat("model.layers.", i, ".");
    add(layer + "self_attn.q_proj.weight", {q_rows, d}, Init::kNormal);
    add(layer + "self_attn.k_proj.weight", {kv_rows, d}, Init::kNormal);
    add(layer + "self_attn.v_proj.weight", {kv_rows, d}, Init::kNormal);
    add(layer + "self_attn.o_proj.weight", {d, q_rows}, outputs);
    add(layer + "mlp.gate_proj.weight", {ffn, d}, Init::kNormal);
    add(layer + "mlp.up_proj.weight", {ffn, d}, Init::kNormal);
    add(layer + "mlp.down_proj.weight", {d, ffn}, outputs);
    add(layer + "input_layernorm.weight", {d}, Init::kOutlierNormWeight);           // feeds q, k, v
    add(layer + "post_attention_layernorm.weight", {d}, Init::kOutlierNormWeight);  // feeds gate, up
  }
  add("model.norm.weight", {d}, Init::kNormWeight);
  add("lm_head.weight", {p.vocab_size, d}, Init::kNormal);
  return t;
}

// `weight_outliers`: the output projections (attention out and MLP down) get outlier columns.
std::vector<SyntheticTensor> SyntheticTensors(const SyntheticPreset& p, int64_t layers, DType dtype,
                                              bool weight_outliers) {
  const Init outputs = weight_outliers ? Init::kOutlierColumns : Init::kNormal;
  return p.arch == Architecture::kOpt ? OptTensors(p, layers, dtype, outputs) : LlamaTensors(p, layers, dtype, outputs);
}

absl::Status WriteTensor(ShardedSafetensorsWriter& writer, const SyntheticTensor& tensor, uint64_t seed,
                         const std::vector<bool>& outliers) {
  NormalStream normal(StreamKey(seed, tensor.spec.name));
  const int64_t total = tensor.spec.num_elements();
  const int64_t cols = tensor.spec.shape.back();
  const std::vector<bool> outlier_columns = tensor.init == Init::kOutlierColumns
                                                ? OutlierChannels(cols, seed, tensor.spec.name + " outlier columns")
                                                : std::vector<bool>();
  std::vector<float> chunk;
  for (int64_t begin = 0; begin < total; begin += kChunkElements) {
    chunk.resize(std::min(kChunkElements, total - begin));
    for (size_t i = 0; i < chunk.size(); ++i) {
      if (tensor.init == Init::kNormal || tensor.init == Init::kOutlierColumns) {
        const bool outlier = !outlier_columns.empty() && outlier_columns[(begin + i) % cols];
        chunk[i] = static_cast<float>(kInitStd) * normal.Next() * (outlier ? kWeightOutlierScale : 1.0f);
      } else {
        const bool outlier = tensor.init == Init::kOutlierNormWeight && outliers[(begin + i) % cols];
        chunk[i] = (1.0f + kNormNoiseStd * normal.Next()) * (outlier ? kOutlierScale : 1.0f);
      }
    }
    QSHARD_RETURN_IF_ERROR(writer.AppendFloat(tensor.spec.name, chunk));
  }
  return absl::OkStatus();
}

std::string TorchDtype(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "float32";
    case DType::kBF16:
      return "bfloat16";
    default:
      return "float16";
  }
}

// The keys and defaults transformers' OPTConfig / LlamaConfig write (save_pretrained sorts them;
// so does nlohmann). transformers_version is left out: no transformers wrote this file.
json ConfigJson(const SyntheticPreset& p, int64_t layers, DType dtype) {
  if (p.arch == Architecture::kOpt) {
    return {{"_remove_final_layer_norm", false},
            {"activation_dropout", 0.0},
            {"activation_function", "relu"},
            {"architectures", {"OPTForCausalLM"}},
            {"attention_dropout", 0.0},
            {"bos_token_id", 2},
            {"do_layer_norm_before", true},
            {"dropout", 0.1},
            {"enable_bias", true},
            {"eos_token_id", 2},
            {"ffn_dim", p.intermediate_size},
            {"hidden_size", p.hidden_size},
            {"init_std", kInitStd},
            {"layer_norm_elementwise_affine", true},
            {"layerdrop", 0.0},
            {"max_position_embeddings", p.max_positions},
            {"model_type", "opt"},
            {"num_attention_heads", p.num_heads},
            {"num_hidden_layers", layers},
            {"pad_token_id", 1},
            {"torch_dtype", TorchDtype(dtype)},
            {"use_cache", true},
            {"vocab_size", p.vocab_size},
            {"word_embed_proj_dim", p.hidden_size}};
  }
  return {{"architectures", {"LlamaForCausalLM"}},
          {"attention_bias", false},
          {"attention_dropout", 0.0},
          {"bos_token_id", 1},
          {"eos_token_id", 2},
          {"hidden_act", "silu"},
          {"hidden_size", p.hidden_size},
          {"initializer_range", kInitStd},
          {"intermediate_size", p.intermediate_size},
          {"max_position_embeddings", p.max_positions},
          {"mlp_bias", false},
          {"model_type", "llama"},
          {"num_attention_heads", p.num_heads},
          {"num_hidden_layers", layers},
          {"num_key_value_heads", p.num_kv_heads},
          {"pretraining_tp", 1},
          {"rms_norm_eps", p.rms_norm_eps},
          {"rope_scaling", nullptr},
          {"rope_theta", 10000.0},
          {"tie_word_embeddings", false},
          {"torch_dtype", TorchDtype(dtype)},
          {"use_cache", true},
          {"vocab_size", p.vocab_size}};
}

json GenerationConfigJson(Architecture arch) {
  if (arch == Architecture::kOpt)
    return {{"_from_model_config", true}, {"bos_token_id", 2}, {"eos_token_id", 2}, {"pad_token_id", 1}};
  return {{"_from_model_config", true}, {"bos_token_id", 1}, {"eos_token_id", 2}};
}

// Stand-in tokenizer files, by output name: content, or copied from the shared data folder.
struct TokenizerFile {
  std::string output_name;
  std::string content;
};

absl::StatusOr<std::vector<TokenizerFile>> StandInTokenizer(Architecture arch, const std::string& data_dir,
                                                           Env* env) {
  std::vector<TokenizerFile> files;
  const auto copy = [&](const std::string& source, const std::string& output_name) -> absl::Status {
    absl::StatusOr<std::string> content = env->ReadFileToString(data_dir + "/" + source);
    if (!content.ok())
      return WithContext(content.status(), "cannot read the stand-in tokenizer file (set the shared data folder "
                                           "to ../shared/data or equivalent)");
    files.push_back({output_name, *std::move(content)});
    return absl::OkStatus();
  };
  if (arch == Architecture::kLlama) {
    QSHARD_RETURN_IF_ERROR(copy("tinystories-656k/tokenizer.json", "tokenizer.json"));
    QSHARD_RETURN_IF_ERROR(copy("tinystories-656k/tokenizer_config.json", "tokenizer_config.json"));
    QSHARD_RETURN_IF_ERROR(copy("tinystories-656k/special_tokens_map.json", "special_tokens_map.json"));
    return files;
  }
  QSHARD_RETURN_IF_ERROR(copy("gpt2-tokenizer/encoder.json", "vocab.json"));
  QSHARD_RETURN_IF_ERROR(copy("gpt2-tokenizer/vocab.bpe", "merges.txt"));
  // GPT-2's vocabulary has no </s> or <pad>: its one special token stands in for all of them.
  const std::string special = "<|endoftext|>";
  const json special_map = {{"bos_token", special}, {"eos_token", special}, {"pad_token", special}, {"unk_token", special}};
  json config = special_map;
  config.update({{"add_bos_token", true},  // OPT prepends its BOS token
                 {"add_prefix_space", false},
                 {"errors", "replace"},
                 {"model_max_length", 2048},
                 {"tokenizer_class", "GPT2Tokenizer"}});
  files.push_back({"tokenizer_config.json", config.dump(2) + "\n"});
  files.push_back({"special_tokens_map.json", special_map.dump(2) + "\n"});
  return files;
}

std::string Readme(const SyntheticPreset& p, const SyntheticSpec& spec, int64_t layers,
                   const std::vector<bool>& outliers) {
  std::vector<int64_t> channels;
  for (size_t c = 0; c < outliers.size(); ++c)
    if (outliers[c]) channels.push_back(static_cast<int64_t>(c));
  const bool opt = p.arch == Architecture::kOpt;
  return absl::StrCat(
      "# Synthetic ", p.name, " (written by qshard)\n\n",
      "NOT A TRAINED MODEL: the weights are random, so its outputs are meaningless. It has the shapes and\n",
      "config.json of ", p.source, " with ", layers, " of its ", p.num_layers, " layers, stored as ",
      TorchDtype(spec.dtype), ", seed ", spec.seed, ".\n\n",
      "- Linear weights, biases and embeddings: N(0, 0.02).\n",
      "- Norm weights: 1 + N(0, 0.05); in the norms that feed the attention and MLP projections (",
      opt ? "self_attn_layer_norm, final_layer_norm" : "input_layernorm, post_attention_layernorm",
      ") hidden channels ", absl::StrJoin(channels, ", "), " are scaled x20 in every layer (activation outliers).\n",
      spec.weight_outliers ? absl::StrCat("- Weight outliers: in ", opt ? "out_proj and fc2" : "o_proj and down_proj",
                                          ", 1% of the input columns (per tensor) are scaled x10.\n")
                           : "",
      "- Tokenizer: a STAND-IN. ",
      opt ? "vocab.json and merges.txt are GPT-2's byte-level BPE (same merges as OPT, but GPT-2's token ids, "
            "not OPT's; <|endoftext|> stands in for OPT's special tokens).\n"
          : "tokenizer.json is TinyStories-656K's BPE (2048 tokens, not LLaMA's 32000-token SentencePiece).\n");
}

}  // namespace

const std::vector<SyntheticPreset>& SyntheticPresets() {
  static const std::vector<SyntheticPreset> presets = {
      {"opt-125m", "facebook/opt-125m", Architecture::kOpt, 768, 3072, 12, 12, 12, 50272, 2048, 0},
      {"opt-1.3b", "facebook/opt-1.3b", Architecture::kOpt, 2048, 8192, 24, 32, 32, 50272, 2048, 0},
      {"opt-6.7b", "facebook/opt-6.7b", Architecture::kOpt, 4096, 16384, 32, 32, 32, 50272, 2048, 0},
      {"opt-66b", "facebook/opt-66b", Architecture::kOpt, 9216, 36864, 64, 72, 72, 50272, 2048, 0},
      {"opt-175b", "OPT-175B (metaseq)", Architecture::kOpt, 12288, 49152, 96, 96, 96, 50272, 2048, 0},
      {"llama-7b", "huggyllama/llama-7b (LLaMA-1)", Architecture::kLlama, 4096, 11008, 32, 32, 32, 32000, 2048,
       1e-6},
      {"llama-70b", "meta-llama/Llama-2-70b-hf", Architecture::kLlama, 8192, 28672, 80, 64, 8, 32000, 4096,
       1e-5},
  };
  return presets;
}

absl::StatusOr<SyntheticPreset> FindSyntheticPreset(std::string_view name) {
  std::vector<std::string> names;
  for (const SyntheticPreset& p : SyntheticPresets()) {
    if (p.name == name) return p;
    names.push_back(p.name);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown synthetic preset '", std::string(name), "' (known: ", absl::StrJoin(names, ", "), ")"));
}

std::vector<TensorSpec> SyntheticTensorSpecs(const SyntheticPreset& preset, int64_t num_layers, DType dtype) {
  std::vector<TensorSpec> specs;
  for (SyntheticTensor& t : SyntheticTensors(preset, num_layers, dtype, false)) specs.push_back(std::move(t.spec));
  return specs;
}

absl::Status WriteSyntheticModel(const SyntheticSpec& spec) {
  QSHARD_ASSIGN_OR_RETURN(const SyntheticPreset preset, FindSyntheticPreset(spec.preset));
  if (spec.out_dir.empty()) return absl::InvalidArgumentError("synthetic model: no output directory given");
  if (spec.num_layers.has_value() && *spec.num_layers < 1)
    return absl::InvalidArgumentError(absl::StrCat("synthetic model: layer count ", *spec.num_layers, " must be >= 1"));
  if (spec.dtype != DType::kF16 && spec.dtype != DType::kBF16 && spec.dtype != DType::kF32)
    return absl::InvalidArgumentError(absl::StrCat("synthetic model: dtype ", std::string(DTypeName(spec.dtype)),
                                                   " is not one of F16, BF16, F32"));
  const int64_t layers = spec.num_layers.value_or(preset.num_layers);
  if (spec.config_only) {
    QSHARD_RETURN_IF_ERROR(spec.env->CreateDirs(spec.out_dir));
    return WriteFileAtomically(spec.out_dir + "/config.json", ConfigJson(preset, layers, spec.dtype).dump(2) + "\n",
                               spec.env);
  }
  // Read the tokenizer first: a missing file should fail before gigabytes are written.
  QSHARD_ASSIGN_OR_RETURN(const std::vector<TokenizerFile> tokenizer,
                          StandInTokenizer(preset.arch, spec.shared_data_dir, spec.env));

  const std::vector<SyntheticTensor> tensors = SyntheticTensors(preset, layers, spec.dtype, spec.weight_outliers);
  ShardingOptions sharding;
  sharding.max_shard_bytes = spec.max_shard_bytes;
  QSHARD_ASSIGN_OR_RETURN(auto writer, ShardedSafetensorsWriter::Create(
                                           spec.out_dir, SyntheticTensorSpecs(preset, layers, spec.dtype), sharding,
                                           spec.env));
  const std::vector<bool> outliers = OutlierChannels(preset.hidden_size, spec.seed);
  for (const SyntheticTensor& t : tensors) QSHARD_RETURN_IF_ERROR(WriteTensor(*writer, t, spec.seed, outliers));

  for (const TokenizerFile& file : tokenizer) writer->AddFile(file.output_name, file.content);
  writer->AddFile("generation_config.json", GenerationConfigJson(preset.arch).dump(2) + "\n");
  writer->AddFile("README.md", Readme(preset, spec, layers, outliers));
  // Last, so a directory whose renaming was interrupted does not open as a model.
  writer->AddFile("config.json", ConfigJson(preset, layers, spec.dtype).dump(2) + "\n");
  return writer->Finish();
}

}  // namespace qshard
