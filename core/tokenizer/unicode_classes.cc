#include "core/tokenizer/unicode_classes.h"

#include <algorithm>
#include <iterator>

#include "core/tokenizer/utf8.h"

namespace qshard::unicode {
namespace {

struct CodePointRange {
  char32_t first;
  char32_t last;
};

#include "core/tokenizer/unicode_classes_table.inc"

template <size_t N>
bool InRanges(const CodePointRange (&ranges)[N], char32_t cp) {
  // First range whose end is >= cp; cp is in the class if that range also starts <= cp.
  const auto it = std::lower_bound(std::begin(ranges), std::end(ranges), cp,
                                   [](const CodePointRange& r, char32_t c) { return r.last < c; });
  return it != std::end(ranges) && it->first <= cp;
}

}  // namespace

bool IsLetter(char32_t cp) {
  if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
  return InRanges(kLetterRanges, cp);
}

bool IsNumber(char32_t cp) {
  if (cp < 0x80) return cp >= '0' && cp <= '9';
  return InRanges(kNumberRanges, cp);
}

bool IsWhitespace(char32_t cp) {
  if (cp < 0x80) return cp == ' ' || (cp >= '\t' && cp <= '\r');
  return InRanges(kWhitespaceRanges, cp);
}

size_t LeadingWhitespaceLength(std::string_view text) {
  size_t end = 0;
  while (end < text.size()) {
    size_t next = end;
    if (!IsWhitespace(utf8::Next(text, next))) break;
    end = next;
  }
  return end;
}

size_t TrailingWhitespaceStart(std::string_view text) {
  size_t start = text.size();
  while (start > 0) {
    const size_t previous = utf8::PreviousStart(text, start);
    size_t next = previous;
    if (!IsWhitespace(utf8::Next(text, next))) break;
    start = previous;
  }
  return start;
}

}  // namespace qshard::unicode
