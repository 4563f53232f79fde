#include "core/tokenizer/byte_level.h"

#include <array>
#include <cstdint>

#include "core/tokenizer/utf8.h"

namespace qshard::byte_level {
namespace {

// 188 printable bytes map to themselves and 68 others to U+0100.., so every mapped code
// point is below this bound.
constexpr char32_t kMappedLimit = 0x100 + 68;

struct Tables {
  std::array<std::string, 256> byte_to_utf8;
  std::array<char32_t, 256> byte_to_char;
  std::array<int16_t, kMappedLimit> char_to_byte;  // -1: not a mapped character
};

// Printable Latin-1 bytes map to themselves; the others take the code points from U+0100
// upwards, in byte order.
Tables BuildTables() {
  Tables t;
  t.char_to_byte.fill(-1);
  char32_t next_extra = 0x100;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    const char32_t cp = printable ? static_cast<char32_t>(b) : next_extra++;
    t.byte_to_char[b] = cp;
    t.byte_to_utf8[b] = utf8::Encode(cp);
    t.char_to_byte[cp] = static_cast<int16_t>(b);
  }
  return t;
}

const Tables& GetTables() {
  static const Tables tables = BuildTables();
  return tables;
}

}  // namespace

char32_t ByteToChar(unsigned char byte) { return GetTables().byte_to_char[byte]; }

std::optional<unsigned char> CharToByte(char32_t cp) {
  if (cp >= kMappedLimit || GetTables().char_to_byte[cp] < 0) return std::nullopt;
  return static_cast<unsigned char>(GetTables().char_to_byte[cp]);
}

std::string Encode(std::string_view text) {
  const Tables& t = GetTables();
  std::string out;
  out.reserve(text.size() * 2);
  for (unsigned char b : text) out += t.byte_to_utf8[b];
  return out;
}

}  // namespace qshard::byte_level
