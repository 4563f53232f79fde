// The evaluation text protocol against reference.md's character counts (code points, not
// bytes: the full WikiText-2 text is 1,294,946 bytes), and its errors.
#include "core/tokenizer/eval_text.h"

#include <filesystem>
#include <fstream>

#include "core/tokenizer/utf8.h"
#include "golden_util.h"
#include "gtest/gtest.h"

namespace qshard {
namespace {

size_t CodePoints(const std::string& text) {
  size_t count = 0;
  for (size_t pos = 0; pos < text.size(); ++count) utf8::Next(text, pos);
  return count;
}

TEST(EvalTextTest, MatchesReferenceCharacterCounts) {
  const std::string wiki = testing::DataPath("wikitext-2-raw/wiki.test.raw");
  const std::string ptb = testing::DataPath("ptb/ptb.valid.txt");
  ASSERT_TRUE(testing::FileExists(wiki));
  ASSERT_TRUE(testing::FileExists(ptb));

  const absl::StatusOr<std::string> all = ReadEvalText(wiki);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(CodePoints(*all), 1292912u);
  EXPECT_EQ(all->size(), 1294946u);
  EXPECT_TRUE(all->starts_with(" \n\n = Robert Boulter = \n\n \n\n Robert Boulter is"));

  const absl::StatusOr<std::string> first = ReadEvalText(wiki, 1, 2179);
  const absl::StatusOr<std::string> second = ReadEvalText(wiki, 2180, 4358);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(CodePoints(*first), 633737u);
  EXPECT_EQ(CodePoints(*second), 659173u);
  EXPECT_EQ(*first + "\n\n" + *second, *all);

  const absl::StatusOr<std::string> ptb_text = ReadEvalText(ptb);
  ASSERT_TRUE(ptb_text.ok()) << ptb_text.status();
  EXPECT_EQ(CodePoints(*ptb_text), 403150u);
}

TEST(EvalTextTest, LineBreaksAndRanges) {
  const std::string path =
      (std::filesystem::temp_directory_path() / "qshard_eval_text_test.txt").string();
  std::ofstream(path, std::ios::binary) << "one\r\ntwo\n\nfour";  // no final line break
  EXPECT_EQ(*ReadEvalText(path), "one\n\ntwo\n\n\n\nfour");
  EXPECT_EQ(*ReadEvalText(path, 2, 3), "two\n\n");
  EXPECT_EQ(*ReadEvalText(path, 4, 4), "four");

  const absl::StatusOr<std::string> beyond = ReadEvalText(path, 2, 5);
  EXPECT_EQ(beyond.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_NE(beyond.status().message().find(path), std::string::npos);
  EXPECT_EQ(ReadEvalText(path, 0, 1).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(ReadEvalText(path, 3, 2).status().code(), absl::StatusCode::kOutOfRange);
  std::filesystem::remove(path);

  const absl::StatusOr<std::string> missing = ReadEvalText(path);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find(path), std::string::npos);
}

}  // namespace
}  // namespace qshard
