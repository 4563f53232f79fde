// GPT-2's reversible byte <-> printable character mapping used by byte-level BPE: every byte
// becomes one visible code point, so vocabularies never contain raw control bytes or spaces.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace qshard::byte_level {

// The code point that stands for `byte` (e.g. ' ' -> U+0120 'Ġ').
char32_t ByteToChar(unsigned char byte);
// The byte a mapped code point stands for, if it is one of the 256.
std::optional<unsigned char> CharToByte(char32_t code_point);

// Maps every byte of `text` to its character, UTF-8 encoded.
std::string Encode(std::string_view text);

}  // namespace qshard::byte_level
