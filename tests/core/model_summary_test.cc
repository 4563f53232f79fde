// SummarizeModel on the real TinyStories checkpoint (whose totals are known: 656,000 fp32
// parameters), on a synthetic OPT, and on small directories for each tokenizer layout.
#include "core/model_summary.h"

#include "core/safetensors_writer.h"
#include "core/status.h"
#include "core/synthetic_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/scoped_temp_dir.h"

namespace qshard {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using qshard::testing::ScopedTempDir;
using qshard::testing::WriteTextFile;

constexpr char kTinyStories[] = "../shared/data/tinystories-656k";

absl::StatusOr<ModelSummary> Summarize(const std::string& dir) {
  QSHARD_ASSIGN_OR_RETURN(auto ckpt, Checkpoint::Open(dir));
  return SummarizeModel(*ckpt);
}

TEST(ModelSummaryTest, TinyStories) {
  const auto s = Summarize(kTinyStories);
  ASSERT_TRUE(s.ok()) << s.status() << " (needs " << kTinyStories << ")";
  EXPECT_EQ(s->architecture, "llama");
  EXPECT_EQ(s->model_type, "llama");
  EXPECT_EQ(s->num_layers, 2);
  EXPECT_EQ(s->hidden_size, 128);
  EXPECT_EQ(s->intermediate_size, 384);
  EXPECT_EQ(s->num_heads, 8);
  EXPECT_EQ(s->num_kv_heads, 4);
  EXPECT_EQ(s->head_dim, 16);
  EXPECT_EQ(s->vocab_size, 2048);
  EXPECT_EQ(s->max_positions, 512);
  EXPECT_TRUE(s->tie_word_embeddings);
  EXPECT_EQ(s->tokenizer_kind, "tokenizer.json:BPE");
  EXPECT_THAT(s->shard_files, ElementsAre("model.safetensors"));
  ASSERT_EQ(s->tensors.size(), 20u);
  EXPECT_EQ(s->parameter_count, 656'000);  // the "656K" of its name
  EXPECT_EQ(s->total_bytes, 656'000u * 4);
  EXPECT_EQ(s->bytes_by_dtype, (std::map<std::string, uint64_t>{{"F32", 656'000u * 4}}));
  EXPECT_EQ(s->tensors.front().name, "lm_head.weight");
  EXPECT_EQ(s->tensors.front().shape, (std::vector<int64_t>{2048, 128}));
  EXPECT_EQ(s->tensors.front().bytes, 2048u * 128 * 4);

  const nlohmann::json j = s->ToJson();
  EXPECT_EQ(j["architecture"], "llama");
  EXPECT_EQ(j["num_kv_heads"], 4);
  EXPECT_EQ(j["parameter_count"], 656000);
  EXPECT_EQ(j["tokenizer_kind"], "tokenizer.json:BPE");
  EXPECT_EQ(j["tensors"].size(), 20u);
  EXPECT_EQ(j["tensors"][0], nlohmann::json({{"name", "lm_head.weight"}, {"dtype", "F32"}, {"shape", {2048, 128}},
                                             {"bytes", 1048576}}));
  EXPECT_EQ(j["bytes_by_dtype"]["F32"], 2624000);

  const std::string text = s->ToText();
  EXPECT_THAT(text, HasSubstr("architecture: llama"));
  EXPECT_THAT(text, HasSubstr("heads: 8  kv heads: 4  head dim: 16"));
  EXPECT_THAT(text, HasSubstr("parameters: 656000"));
  EXPECT_THAT(text, HasSubstr("  model.layers.1.self_attn.k_proj.weight  F32  [64, 128]  32768\n"));
}

TEST(ModelSummaryTest, SyntheticOpt) {
  ScopedTempDir dir;
  SyntheticSpec spec;
  spec.preset = "opt-125m";
  spec.num_layers = 1;
  spec.out_dir = dir.path();
  ASSERT_TRUE(WriteSyntheticModel(spec).ok());
  const auto s = Summarize(dir.path());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->architecture, "opt");
  EXPECT_EQ(s->tokenizer_kind, "vocab.json+merges.txt");
  EXPECT_EQ(s->num_layers, 1);
  // Embeddings (50272 + 2050 positions) x 768, one layer of 7,087,872, the final norm.
  EXPECT_EQ(s->parameter_count, (50272 + 2050) * 768 + 7'087'872 + 2 * 768);
  EXPECT_EQ(s->total_bytes, 2u * s->parameter_count);
  EXPECT_EQ(s->bytes_by_dtype.size(), 1u);
  EXPECT_EQ(s->tensors.size(), 20u);
}

// A one-tensor LLaMA directory with the given tokenizer files.
void WriteTinyModel(const ScopedTempDir& dir) {
  WriteTextFile(dir.Child("config.json"),
                R"({"model_type":"llama","hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,)"
                R"("vocab_size":16,"intermediate_size":16})");
  ASSERT_TRUE(WriteShardedSafetensors(dir.path(), {*EncodeFloatTensor("w", Tensor({2, 3}), DType::kBF16)}).ok());
}

TEST(ModelSummaryTest, DetectsEachTokenizerLayout) {
  ScopedTempDir dir;
  WriteTinyModel(dir);
  EXPECT_EQ(Summarize(dir.path())->tokenizer_kind, "none");
  WriteTextFile(dir.Child("tokenizer.model"), "sentencepiece bytes");
  EXPECT_EQ(Summarize(dir.path())->tokenizer_kind, "tokenizer.model");
  WriteTextFile(dir.Child("vocab.json"), "{}");
  EXPECT_EQ(Summarize(dir.path())->tokenizer_kind, "tokenizer.model");  // merges.txt still missing
  WriteTextFile(dir.Child("merges.txt"), "#version: 0.2\n");
  EXPECT_EQ(Summarize(dir.path())->tokenizer_kind, "vocab.json+merges.txt");
  WriteTextFile(dir.Child("tokenizer.json"), R"({"model":{"type":"Unigram","vocab":[]}})");
  EXPECT_EQ(Summarize(dir.path())->tokenizer_kind, "tokenizer.json:Unigram");
  WriteTextFile(dir.Child("tokenizer.json"), R"({"model":{"vocab":{}}})");
  EXPECT_EQ(Summarize(dir.path())->tokenizer_kind, "tokenizer.json:unknown");
}

TEST(ModelSummaryTest, MalformedTokenizerJsonIsAnErrorNamingIt) {
  ScopedTempDir dir;
  WriteTinyModel(dir);
  WriteTextFile(dir.Child("tokenizer.json"), "{ truncated");
  const auto s = Summarize(dir.path());
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("tokenizer.json: invalid JSON"));
  WriteTextFile(dir.Child("tokenizer.json"), R"({"version":"1.0"})");
  EXPECT_THAT(std::string(Summarize(dir.path()).status().message()), HasSubstr("no 'model' object"));
}

TEST(ModelSummaryTest, ABrokenShardIsAnError) {
  ScopedTempDir dir;
  WriteTinyModel(dir);
  WriteTextFile(dir.Child("model.safetensors.index.json"),
                R"({"weight_map":{"w":"model.safetensors","ghost":"model.safetensors"}})");
  const auto s = Summarize(dir.path());
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("'ghost'"));
}

}  // namespace
}  // namespace qshard
