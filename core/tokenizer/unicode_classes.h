// The three Unicode classes the GPT-2 split pattern needs (\p{L}, \p{N}, \s), from a compact
// range table measured on Hugging Face tokenizers itself (see unicode_classes_table.inc), and
// whitespace trimming built on them.
#pragma once

#include <cstddef>
#include <string_view>

namespace qshard::unicode {

bool IsLetter(char32_t code_point);
bool IsNumber(char32_t code_point);
bool IsWhitespace(char32_t code_point);

// Byte length of the whitespace run that starts `text` (valid UTF-8).
size_t LeadingWhitespaceLength(std::string_view text);
// Byte offset where the whitespace run that ends `text` starts (text.size() if none).
size_t TrailingWhitespaceStart(std::string_view text);

}  // namespace qshard::unicode
