// Delimiter behaviours on Hugging Face's documented example ("the-final--countdown" split on
// '-'), and the hand-written GPT-2 pattern on the cases its alternatives decide.
#include "core/tokenizer/split.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace qshard {
namespace {

std::vector<std::string> Pieces(std::string_view text, const std::vector<Segment>& segments) {
  std::vector<std::string> out;
  for (const Segment& s : segments) out.emplace_back(text.substr(s.begin, s.end - s.begin));
  return out;
}

using Strings = std::vector<std::string>;

TEST(SplitTest, BehaviorsOnDocumentedExample) {
  const std::string text = "the-final--countdown";
  const auto split = [&](SplitBehavior behavior, bool invert = false) {
    return Pieces(text, ApplySplitBehavior(FindStringMatches(text, "-"), behavior, invert));
  };
  EXPECT_EQ(split(SplitBehavior::kRemoved), (Strings{"the", "final", "countdown"}));
  EXPECT_EQ(split(SplitBehavior::kIsolated), (Strings{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(split(SplitBehavior::kMergedWithPrevious),
            (Strings{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(split(SplitBehavior::kMergedWithNext), (Strings{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(split(SplitBehavior::kContiguous), (Strings{"the", "-", "final", "--", "countdown"}));
  EXPECT_EQ(split(SplitBehavior::kRemoved, /*invert=*/true), (Strings{"-", "-", "-"}));
}

TEST(SplitTest, ParsesBehaviorNames) {
  EXPECT_EQ(*ParseSplitBehavior("MergedWithNext"), SplitBehavior::kMergedWithNext);
  EXPECT_FALSE(ParseSplitBehavior("Merged").ok());
}

TEST(SplitTest, Gpt2PatternAlternatives) {
  const auto split = [](std::string_view text) { return Pieces(text, FindGpt2Matches(text)); };
  EXPECT_EQ(split("Hello world's 42nd"), (Strings{"Hello", " world", "'s", " 42", "nd"}));
  // A whitespace run gives its last character to the word that follows.
  EXPECT_EQ(split("a   b"), (Strings{"a", "  ", " b"}));
  EXPECT_EQ(split("a\n\nb"), (Strings{"a", "\n", "\n", "b"}));
  EXPECT_EQ(split("end  "), (Strings{"end", "  "}));
  // Only U+0020 is the optional leading space; U+00A0 is whitespace on its own.
  EXPECT_EQ(split("x\u00a0y"), (Strings{"x", "\u00a0", "y"}));
  EXPECT_EQ(split("''s 'S ?!"), (Strings{"''", "s", " '", "S", " ?!"}));
  EXPECT_EQ(split("caf\u00e9 \u65e5\u672c 3\u00bd"),
            (Strings{"caf\u00e9", " \u65e5\u672c", " 3\u00bd"}));
  EXPECT_TRUE(split("").empty());
}

}  // namespace
}  // namespace qshard
