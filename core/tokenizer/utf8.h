// UTF-8 helpers for the tokenizer: code point iteration over text already known to be valid,
// encoding, and the lossy conversion (invalid bytes -> U+FFFD) applied to every input first.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace qshard::utf8 {

inline constexpr char32_t kReplacementChar = 0xFFFD;

// Decodes the code point starting at text[pos] and advances pos past it. `text` must be
// valid UTF-8 (the tokenizer converts every input with ToValidUtf8 first).
char32_t Next(std::string_view text, size_t& pos);

// Byte length of the sequence whose lead byte is `lead` (1 for continuation bytes, so a
// scan over valid text never stalls).
inline size_t SequenceLength(unsigned char lead) {
  if (lead < 0xC0) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  return 4;
}

// Start of the code point that ends at text[end - 1] (end > 0; valid text).
size_t PreviousStart(std::string_view text, size_t end);

void Append(std::string& out, char32_t code_point);
std::string Encode(char32_t code_point);

bool IsValid(std::string_view bytes);

// Replaces each maximal invalid subsequence with U+FFFD, as the WHATWG decoder (Node's
// Buffer.toString) and Rust's String::from_utf8_lossy both do. Hugging Face's Rust API takes
// &str, so this is how invalid bytes reach it through its bindings.
std::string ToValidUtf8(std::string_view bytes);

}  // namespace qshard::utf8
