// Exactness against Hugging Face tokenizers 0.23.2: the golden ids in tests/reference/tokenizer
// (made by make_golden.js) for the evaluation texts and for adversarial strings, on
// TinyStories-656K's tokenizer, GPT-2's, and variants exercising the other supported sections.
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "core/tokenizer/eval_text.h"
#include "core/tokenizer/tokenizer.h"
#include "core/tokenizer/utf8.h"
#include "golden_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace qshard {
namespace {

using testing::DataPath;
using testing::FileExists;
using testing::FirstMismatch;
using testing::GoldenPath;
using testing::ReadIds16;

const char kTinyStoriesJson[] = "tinystories-656k/tokenizer.json";
const char kWikiText[] = "wikitext-2-raw/wiki.test.raw";

absl::StatusOr<Tokenizer> LoadTinyStories() {
  return Tokenizer::FromFile(DataPath(kTinyStoriesJson));
}

absl::StatusOr<Tokenizer> LoadGpt2() {
  return Tokenizer::FromVocabMerges(DataPath("gpt2-tokenizer/encoder.json"),
                                    DataPath("gpt2-tokenizer/vocab.bpe"), {"<|endoftext|>"});
}

struct EvalCase {
  const char* text_file;
  int first_line;
  int last_line;
  const char* golden;
};

void ExpectGoldenEvalText(const Tokenizer& tokenizer, const EvalCase& c) {
  ASSERT_TRUE(FileExists(DataPath(c.text_file)));
  ASSERT_TRUE(FileExists(GoldenPath(c.golden)));
  const absl::StatusOr<std::string> text =
      ReadEvalText(DataPath(c.text_file), c.first_line, c.last_line);
  ASSERT_TRUE(text.ok()) << text.status();
  const absl::StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(*text);
  ASSERT_TRUE(ids.ok()) << ids.status();
  const std::vector<int32_t> expected = ReadIds16(GoldenPath(c.golden));
  EXPECT_EQ(FirstMismatch(tokenizer, expected, *ids), "") << c.golden;
}

TEST(TokenizerGoldenTest, TinyStoriesFullWikiText2MatchesReference) {
  ASSERT_TRUE(FileExists(DataPath(kTinyStoriesJson)));
  ASSERT_TRUE(FileExists(DataPath(kWikiText)));
  const absl::StatusOr<Tokenizer> tokenizer = LoadTinyStories();
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const absl::StatusOr<std::string> text = ReadEvalText(DataPath(kWikiText));
  ASSERT_TRUE(text.ok()) << text.status();

  const auto start = std::chrono::steady_clock::now();
  const absl::StatusOr<std::vector<int32_t>> ids = tokenizer->Encode(*text);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(ids.ok()) << ids.status();
  std::printf(
      "[ timing ] TinyStories-656K encodes WikiText-2 test (%zu bytes, %zu tokens) in %.3f s\n",
      text->size(), ids->size(), seconds);

  // reference.md's figures, independent of the golden file.
  EXPECT_EQ(ids->size(), 558787u);
  const std::vector<int32_t> first(ids->begin(), ids->begin() + 11);
  EXPECT_EQ(first, (std::vector<int32_t>{80, 80, 3, 3, 80, 0, 80, 43, 492, 91, 86}));
  EXPECT_EQ(std::count(ids->begin(), ids->end(), 0), 14463);

  ASSERT_TRUE(FileExists(GoldenPath("tinystories_wikitext2_test.ids16")));
  EXPECT_EQ(
      FirstMismatch(*tokenizer, ReadIds16(GoldenPath("tinystories_wikitext2_test.ids16")), *ids),
      "");
}

TEST(TokenizerGoldenTest, TinyStoriesWikiText2HalvesAndPtbMatchReference) {
  ASSERT_TRUE(FileExists(DataPath(kTinyStoriesJson)));
  const absl::StatusOr<Tokenizer> tokenizer = LoadTinyStories();
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  for (const EvalCase& c : {
           EvalCase{kWikiText, 1, 2179, "tinystories_wikitext2_test_lines1-2179.ids16"},
           EvalCase{kWikiText, 2180, 4358, "tinystories_wikitext2_test_lines2180-4358.ids16"},
           EvalCase{"ptb/ptb.valid.txt", 1, 0, "tinystories_ptb_valid.ids16"},
       }) {
    ExpectGoldenEvalText(*tokenizer, c);
  }
  // reference.md's token counts.
  EXPECT_EQ(ReadIds16(GoldenPath("tinystories_wikitext2_test_lines1-2179.ids16")).size(), 275363u);
  EXPECT_EQ(ReadIds16(GoldenPath("tinystories_wikitext2_test_lines2180-4358.ids16")).size(),
            283424u);
  EXPECT_EQ(ReadIds16(GoldenPath("tinystories_ptb_valid.ids16")).size(), 158805u);
}

TEST(TokenizerGoldenTest, Gpt2WikiText2ChunkMatchesReferenceAndRoundTrips) {
  ASSERT_TRUE(FileExists(DataPath("gpt2-tokenizer/encoder.json")));
  ASSERT_TRUE(FileExists(DataPath("gpt2-tokenizer/vocab.bpe")));
  const absl::StatusOr<Tokenizer> tokenizer = LoadGpt2();
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  ExpectGoldenEvalText(*tokenizer, {kWikiText, 1, 2000, "gpt2_wikitext2_test_lines1-2000.ids16"});

  // Byte-level BPE loses nothing: the decoded ids give the text back.
  const absl::StatusOr<std::string> text = ReadEvalText(DataPath(kWikiText), 1, 2000);
  ASSERT_TRUE(text.ok()) << text.status();
  const absl::StatusOr<std::vector<int32_t>> ids = tokenizer->Encode(*text);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_TRUE(tokenizer->Decode(*ids) == *text);
}

// Loads each tokenizer named in adversarial.json the way the golden script built it.
absl::StatusOr<Tokenizer> LoadByGoldenName(const std::string& name) {
  if (name == "tinystories") return LoadTinyStories();
  if (name == "gpt2") return LoadGpt2();
  return Tokenizer::FromFile(GoldenPath("variants/" + name + ".json"));
}

TEST(TokenizerGoldenTest, AdversarialStringsMatchReference) {
  const std::string golden_path = GoldenPath("adversarial.json");
  ASSERT_TRUE(FileExists(golden_path));
  ASSERT_TRUE(FileExists(DataPath(kTinyStoriesJson)));
  const nlohmann::json golden = nlohmann::json::parse(testing::ReadFileBytes(golden_path));
  const nlohmann::json& strings = golden.at("strings");

  // Each string as bytes; invalid UTF-8 must convert exactly as the Node binding did.
  std::vector<std::string> inputs;
  for (const nlohmann::json& s : strings) {
    if (s.contains("hex")) {
      inputs.push_back(absl::HexStringToBytes(s.at("hex").get<std::string>()));
      EXPECT_EQ(utf8::ToValidUtf8(inputs.back()), s.at("lossy_text").get<std::string>())
          << s.at("name");
    } else {
      inputs.push_back(s.at("text").get<std::string>());
    }
  }

  int tokenizers_checked = 0;
  for (const auto& [name, results] : golden.at("results").items()) {
    SCOPED_TRACE("tokenizer " + name);
    const absl::StatusOr<Tokenizer> tokenizer = LoadByGoldenName(name);
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    ASSERT_EQ(results.size(), inputs.size());
    for (size_t i = 0; i < inputs.size(); ++i) {
      SCOPED_TRACE("string '" + strings[i].at("name").get<std::string>() + "'");
      const absl::StatusOr<std::vector<int32_t>> ids = tokenizer->Encode(inputs[i]);
      ASSERT_TRUE(ids.ok()) << ids.status();
      const auto expected = results[i].at("ids").get<std::vector<int32_t>>();
      EXPECT_EQ(FirstMismatch(*tokenizer, expected, *ids), "");
      EXPECT_EQ(tokenizer->Decode(expected), results[i].at("decoded").get<std::string>());
      EXPECT_EQ(tokenizer->Decode(expected, /*skip_special_tokens=*/true),
                results[i].at("decoded_skip_special").get<std::string>());
    }
    ++tokenizers_checked;
  }
  EXPECT_EQ(tokenizers_checked, 7);
}

}  // namespace
}  // namespace qshard
