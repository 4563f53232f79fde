// The Tokenizer API on the real TinyStories-656K and GPT-2 files: reference.md's golden
// examples, model-directory loading (BOS/EOS, special tokens), decode round trips, invalid
// UTF-8, and errors for malformed files. Bulk exactness is in tokenizer_golden_test.cc.
#include "core/tokenizer/tokenizer.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "golden_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace qshard {
namespace {

using testing::DataPath;
using testing::FileExists;

const char kTinyStoriesDir[] = "tinystories-656k";

absl::StatusOr<Tokenizer> LoadTinyStories() {
  return Tokenizer::FromModelDir(DataPath(kTinyStoriesDir));
}

absl::StatusOr<Tokenizer> LoadGpt2() {
  return Tokenizer::FromVocabMerges(DataPath("gpt2-tokenizer/encoder.json"),
                                    DataPath("gpt2-tokenizer/vocab.bpe"), {"<|endoftext|>"});
}

// A scratch directory removed at the end of the test.
class TempDir {
 public:
  explicit TempDir(const std::string& name)
      : path_(std::filesystem::temp_directory_path() / ("qshard_tokenizer_test_" + name)) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string Write(const std::string& name, const std::string& contents) const {
    const std::string file = (path_ / name).string();
    std::ofstream(file, std::ios::binary) << contents;
    return file;
  }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

TEST(TokenizerTest, ReferenceGoldenExamples) {
  ASSERT_TRUE(FileExists(DataPath("tinystories-656k/tokenizer.json")));
  const absl::StatusOr<Tokenizer> tokenizer = LoadTinyStories();
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  struct Example {
    std::string text;
    std::vector<int32_t> ids;
    std::vector<std::string> tokens;
  };
  const std::vector<Example> examples = {
      {" the <unk> cat", {80, 80, 131, 0, 80, 476}, {"▁", "▁", "the", "▁<unk>", "▁", "cat"}},
      {"a=b", {85, 0, 54}, {"▁a", "▁<unk>", "b"}},
      {"a==b", {85, 0, 54}, {"▁a", "▁<unk>", "b"}},
      {"naïve café",
       {80, 557, 0, 218, 295, 58, 0},
       {"▁", "na", "▁<unk>", "ve▁", "ca", "f", "▁<unk>"}},
      {"<|start_story|>Once", {1, 147, 682}, {"▁<|start_story|>", "On", "ce"}},
  };
  for (const Example& e : examples) {
    const absl::StatusOr<std::vector<int32_t>> ids = tokenizer->Encode(e.text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(*ids, e.ids) << e.text;
    std::vector<std::string> tokens;
    for (int32_t id : *ids) tokens.push_back(tokenizer->IdToToken(id).value_or("?"));
    // reference.md writes the <unk> token bare; Hugging Face reads it back as "▁<unk>".
    EXPECT_EQ(tokens, e.tokens) << e.text;
  }
}

TEST(TokenizerTest, TinyStoriesModelDirectory) {
  ASSERT_TRUE(FileExists(DataPath("tinystories-656k/tokenizer.json")));
  const absl::StatusOr<Tokenizer> tokenizer = LoadTinyStories();
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ(tokenizer->bos_id(), 1);
  EXPECT_EQ(tokenizer->eos_id(), 2);
  EXPECT_EQ(tokenizer->vocab_size(), 2048);
  EXPECT_EQ(tokenizer->kind(), "bpe (no pre-tokenizer, fuse_unk)");
  EXPECT_EQ(tokenizer->TokenToId("<unk>"), 0);
  EXPECT_EQ(tokenizer->TokenToId("the▁"), 93);
  EXPECT_EQ(tokenizer->IdToToken(93), "the▁");
  EXPECT_EQ(tokenizer->IdToToken(2048), std::nullopt);
  EXPECT_EQ(tokenizer->TokenToId("not a token"), std::nullopt);
  EXPECT_TRUE(tokenizer->Encode("")->empty());

  // A bare tokenizer.json has no BOS/EOS: those live in the directory's other files.
  const absl::StatusOr<Tokenizer> bare =
      Tokenizer::FromFile(DataPath("tinystories-656k/tokenizer.json"));
  ASSERT_TRUE(bare.ok()) << bare.status();
  EXPECT_EQ(bare->bos_id(), -1);
}

TEST(TokenizerTest, DecodeRoundTrips) {
  ASSERT_TRUE(FileExists(DataPath("tinystories-656k/tokenizer.json")));
  ASSERT_TRUE(FileExists(DataPath("gpt2-tokenizer/encoder.json")));
  const absl::StatusOr<Tokenizer> tiny = LoadTinyStories();
  const absl::StatusOr<Tokenizer> gpt2 = LoadGpt2();
  ASSERT_TRUE(tiny.ok() && gpt2.ok());
  // Texts without characters outside TinyStories-656K's vocabulary.
  for (const std::string text :
       {"Once upon a time, there was a little girl named Lily.",
        "  two leading spaces and two trailing  ", "Lines\n\nwith breaks\n and \"quotes\"!", "x"}) {
    EXPECT_EQ(tiny->Decode(*tiny->Encode(text)), text);
  }
  // Byte-level BPE loses nothing from valid UTF-8.
  for (const std::string text :
       {"naïve café ☕ 日本語 😀👍🏽", "  spaces\t\ttabs\n\n", "'s'S'll",
        "<|endoftext|>between<|endoftext|>", "\u00a0\u2028\u0085"}) {
    EXPECT_EQ(gpt2->Decode(*gpt2->Encode(text)), text);
  }
  EXPECT_EQ(gpt2->Decode(*gpt2->Encode("a<|endoftext|>b"), /*skip_special_tokens=*/true), "ab");
}

TEST(TokenizerTest, InvalidUtf8IsReplacedLikeHuggingFaceBindings) {
  ASSERT_TRUE(FileExists(DataPath("gpt2-tokenizer/encoder.json")));
  const absl::StatusOr<Tokenizer> gpt2 = LoadGpt2();
  ASSERT_TRUE(gpt2.ok()) << gpt2.status();
  // Each maximal invalid subsequence becomes one U+FFFD.
  EXPECT_EQ(*gpt2->Encode("a\xe2\x82"
                          "b\xff"),
            *gpt2->Encode("a\uFFFDb\uFFFD"));
  EXPECT_EQ(gpt2->Decode(*gpt2->Encode("\xc0\xaf")), "\uFFFD\uFFFD");
}

TEST(TokenizerTest, Gpt2ModelDirectoryWithVocabAndMerges) {
  ASSERT_TRUE(FileExists(DataPath("gpt2-tokenizer/encoder.json")));
  ASSERT_TRUE(FileExists(DataPath("gpt2-tokenizer/vocab.bpe")));
  const TempDir dir("gpt2");
  std::filesystem::copy_file(DataPath("gpt2-tokenizer/encoder.json"), dir.path() + "/vocab.json");
  std::filesystem::copy_file(DataPath("gpt2-tokenizer/vocab.bpe"), dir.path() + "/merges.txt");
  dir.Write("special_tokens_map.json", R"({"eos_token": {"content": "<|endoftext|>"}})");
  dir.Write("config.json", R"({"bos_token_id": 50256, "eos_token_id": 0})");

  const absl::StatusOr<Tokenizer> tokenizer = Tokenizer::FromModelDir(dir.path());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ(tokenizer->kind(), "byte-level bpe");
  EXPECT_EQ(tokenizer->vocab_size(), 50257);
  EXPECT_EQ(tokenizer->bos_id(), 50256);  // config.json
  EXPECT_EQ(tokenizer->eos_id(), 50256);  // special_tokens_map.json wins over config.json
  // The special token named there is split out of the text.
  EXPECT_EQ(*tokenizer->Encode("Hello<|endoftext|> world"),
            (std::vector<int32_t>{15496, 50256, 995}));

  dir.Write("tokenizer_config.json", R"({"bos_token": "<s>"})");
  const absl::StatusOr<Tokenizer> unknown_bos = Tokenizer::FromModelDir(dir.path());
  EXPECT_FALSE(unknown_bos.ok());
  EXPECT_NE(unknown_bos.status().message().find("tokenizer_config.json"), std::string::npos);
  EXPECT_NE(unknown_bos.status().message().find("bos_token"), std::string::npos);
}

TEST(TokenizerTest, MissingFilesNameThePath) {
  const TempDir dir("empty");
  const absl::StatusOr<Tokenizer> from_dir = Tokenizer::FromModelDir(dir.path());
  EXPECT_EQ(from_dir.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(from_dir.status().message().find(dir.path()), std::string::npos);

  const std::string missing = dir.path() + "/tokenizer.json";
  const absl::StatusOr<Tokenizer> from_file = Tokenizer::FromFile(missing);
  EXPECT_EQ(from_file.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(from_file.status().message().find(missing), std::string::npos);
}

// A minimal valid tokenizer.json, broken one field at a time below.
nlohmann::json MinimalTokenizerJson() {
  return nlohmann::json::parse(R"({
    "added_tokens": [{"id": 3, "content": "<unk>", "special": true}],
    "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "_"}]},
    "pre_tokenizer": null,
    "decoder": {"type": "Fuse"},
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "<unk>": 3, "_": 4},
              "merges": ["a b"], "unk_token": "<unk>"}
  })");
}

TEST(TokenizerTest, MinimalTokenizerJsonWorks) {
  const absl::StatusOr<Tokenizer> tokenizer =
      Tokenizer::FromJsonText(MinimalTokenizerJson().dump(), "minimal.json");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ(*tokenizer->Encode("abxa"), (std::vector<int32_t>{4, 2, 3, 0}));
  // <unk> is a normalized added token, so it decodes in its normalized form, as in Hugging Face.
  EXPECT_EQ(tokenizer->Decode({4, 2, 3, 0}), "_ab_<unk>a");
}

TEST(TokenizerTest, MalformedTokenizerJsonErrorsNameFileAndField) {
  struct Case {
    std::string name;
    std::function<void(nlohmann::json&)> damage;
    absl::StatusCode code;
    std::string expected_in_message;
  };
  const std::vector<Case> cases = {
      {"no model", [](nlohmann::json& j) { j.erase("model"); }, absl::StatusCode::kInvalidArgument,
       "'model' is missing"},
      {"vocab not an object",
       [](nlohmann::json& j) { j["model"]["vocab"] = nlohmann::json::array(); },
       absl::StatusCode::kInvalidArgument, "model.vocab"},
      {"negative id", [](nlohmann::json& j) { j["model"]["vocab"]["a"] = -1; },
       absl::StatusCode::kInvalidArgument, "model.vocab[\"a\"]"},
      {"merge token unknown", [](nlohmann::json& j) { j["model"]["merges"] = {"a c"}; },
       absl::StatusCode::kInvalidArgument, "model.merges[0]': token \"c\""},
      {"merge without space", [](nlohmann::json& j) { j["model"]["merges"] = {"ab"}; },
       absl::StatusCode::kInvalidArgument, "model.merges[0]"},
      {"merge result unknown", [](nlohmann::json& j) { j["model"]["merges"] = {"b a"}; },
       absl::StatusCode::kInvalidArgument, "token \"ba\""},
      {"wordpiece", [](nlohmann::json& j) { j["model"]["type"] = "WordPiece"; },
       absl::StatusCode::kUnimplemented, "model.type"},
      {"dropout", [](nlohmann::json& j) { j["model"]["dropout"] = 0.1; },
       absl::StatusCode::kUnimplemented, "model.dropout"},
      {"nfc normalizer",
       [](nlohmann::json& j) {
         j["normalizer"]["normalizers"].push_back({{"type", "NFC"}});
       },
       absl::StatusCode::kUnimplemented, "normalizer.normalizers[1].type"},
      {"regex replace",
       [](nlohmann::json& j) {
         j["normalizer"] = {
             {"type", "Replace"}, {"pattern", {{"Regex", "\\s+"}}}, {"content", " "}};
       },
       absl::StatusCode::kUnimplemented, "normalizer.pattern"},
      {"bert pre-tokenizer",
       [](nlohmann::json& j) {
         j["pre_tokenizer"] = {{"type", "BertPreTokenizer"}};
       },
       absl::StatusCode::kUnimplemented, "pre_tokenizer.type"},
      {"bad metaspace replacement",
       [](nlohmann::json& j) {
         j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "ab"}};
       },
       absl::StatusCode::kInvalidArgument, "pre_tokenizer.replacement"},
      {"wordpiece decoder",
       [](nlohmann::json& j) {
         j["decoder"] = {{"type", "WordPiece"}};
       },
       absl::StatusCode::kUnimplemented, "decoder.type"},
      {"added token without content",
       [](nlohmann::json& j) { j["added_tokens"][0].erase("content"); },
       absl::StatusCode::kInvalidArgument, "added_tokens[0].content"},
      {"flag not a bool", [](nlohmann::json& j) { j["model"]["fuse_unk"] = "yes"; },
       absl::StatusCode::kInvalidArgument, "model.fuse_unk"},
  };
  for (const Case& c : cases) {
    nlohmann::json json = MinimalTokenizerJson();
    c.damage(json);
    const absl::StatusOr<Tokenizer> tokenizer = Tokenizer::FromJsonText(json.dump(), "bad.json");
    ASSERT_FALSE(tokenizer.ok()) << c.name;
    EXPECT_EQ(tokenizer.status().code(), c.code) << c.name << ": " << tokenizer.status();
    const std::string message(tokenizer.status().message());
    EXPECT_TRUE(message.starts_with("bad.json: ")) << c.name << ": " << message;
    EXPECT_NE(message.find(c.expected_in_message), std::string::npos) << c.name << ": " << message;
  }

  const absl::StatusOr<Tokenizer> syntax = Tokenizer::FromJsonText("{\"model\": [", "broken.json");
  EXPECT_EQ(syntax.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(syntax.status().message().find("broken.json: invalid JSON"), std::string::npos);
}

TEST(TokenizerTest, UnkTokenMissingFromVocabularyFailsOnlyWhenNeeded) {
  nlohmann::json json = MinimalTokenizerJson();
  json["model"]["unk_token"] = "<missing>";
  const absl::StatusOr<Tokenizer> tokenizer = Tokenizer::FromJsonText(json.dump(), "t.json");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_TRUE(tokenizer->Encode("ab").ok());
  const absl::StatusOr<std::vector<int32_t>> ids = tokenizer->Encode("axb");
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(ids.status().message().find("<missing>"), std::string::npos);
}

TEST(TokenizerTest, MalformedMergesFileNamesLine) {
  const TempDir dir("merges");
  const std::string vocab = dir.Write("vocab.json", R"({"a": 0, "b": 1, "ab": 2})");
  const std::string merges = dir.Write("merges.txt", "#version: 0.2\na b\na b c\n");
  const absl::StatusOr<Tokenizer> tokenizer = Tokenizer::FromVocabMerges(vocab, merges);
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_NE(tokenizer.status().message().find(merges + ": line 3"), std::string::npos)
      << tokenizer.status();

  const absl::StatusOr<Tokenizer> unknown_special =
      Tokenizer::FromVocabMerges(vocab, dir.Write("merges.txt", "a b\n"), {"<|endoftext|>"});
  ASSERT_FALSE(unknown_special.ok());
  EXPECT_NE(unknown_special.status().message().find("<|endoftext|>"), std::string::npos);
}

}  // namespace
}  // namespace qshard
