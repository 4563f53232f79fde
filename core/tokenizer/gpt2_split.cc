// The GPT-2 split pattern, by hand:
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// Alternatives are tried in order at each position (Oniguruma semantics, as in Hugging Face).
#include "core/tokenizer/split.h"
#include "core/tokenizer/unicode_classes.h"
#include "core/tokenizer/utf8.h"

namespace qshard {
namespace {

enum class CharClass { kLetter, kNumber, kWhitespace, kOther };

CharClass Classify(char32_t cp) {
  if (unicode::IsLetter(cp)) return CharClass::kLetter;
  if (unicode::IsNumber(cp)) return CharClass::kNumber;
  if (unicode::IsWhitespace(cp)) return CharClass::kWhitespace;
  return CharClass::kOther;
}

class Gpt2Matcher {
 public:
  explicit Gpt2Matcher(std::string_view text) : text_(text) {}

  // End of the match starting at `begin` (always > begin).
  size_t MatchAt(size_t begin) const {
    if (size_t end = MatchContraction(begin); end != begin) return end;

    // ' ?X+' for X in letters, numbers, others: the optional space is an ASCII space only.
    size_t body = begin;
    if (text_[begin] == ' ' && begin + 1 < text_.size()) body = begin + 1;
    size_t after_first;
    const CharClass cls = ClassAt(body, after_first);
    if (cls != CharClass::kWhitespace) return EndOfRun(after_first, cls);
    // `body` is whitespace, so `begin` is too (a space followed by whitespace).
    return MatchWhitespace(begin);
  }

 private:
  CharClass ClassAt(size_t pos, size_t& next) const {
    next = pos;
    return Classify(utf8::Next(text_, next));
  }

  size_t EndOfRun(size_t pos, CharClass cls) const {
    while (pos < text_.size()) {
      size_t next;
      if (ClassAt(pos, next) != cls) break;
      pos = next;
    }
    return pos;
  }

  size_t MatchContraction(size_t begin) const {
    if (text_[begin] != '\'') return begin;
    const std::string_view rest = text_.substr(begin + 1);
    for (std::string_view suffix : {"s", "t", "re", "ve", "m", "ll", "d"}) {
      if (rest.starts_with(suffix)) return begin + 1 + suffix.size();
    }
    return begin;
  }

  // '\s+(?!\S)' backs off one character when the run is followed by a non-space, so that
  // character can lead the next word (" word"); '\s+' takes a lone whitespace character.
  size_t MatchWhitespace(size_t begin) const {
    size_t pos = begin, last_start = begin;
    int count = 0;
    while (pos < text_.size()) {
      size_t next;
      if (ClassAt(pos, next) != CharClass::kWhitespace) break;
      last_start = pos;
      pos = next;
      ++count;
    }
    if (pos == text_.size() || count == 1) return pos;
    return last_start;
  }

  std::string_view text_;
};

}  // namespace

std::vector<Segment> FindGpt2Matches(std::string_view text) {
  std::vector<Segment> segments;
  const Gpt2Matcher matcher(text);
  for (size_t pos = 0; pos < text.size();) {
    const size_t end = matcher.MatchAt(pos);
    segments.push_back({pos, end, true});
    pos = end;
  }
  return segments;
}

}  // namespace qshard
