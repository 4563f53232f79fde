#include "core/tokenizer/utf8.h"

namespace qshard::utf8 {
namespace {

// Length of the valid sequence at bytes[pos], or the length of its maximal invalid prefix
// negated (at least 1 byte), following the Unicode "maximal subpart" practice.
int ValidSequenceLength(std::string_view bytes, size_t pos) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(bytes[i]); };
  const unsigned char lead = byte(pos);
  if (lead < 0x80) return 1;
  int length;
  unsigned char second_min = 0x80, second_max = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) second_min = 0xA0;  // overlong
    if (lead == 0xED) second_max = 0x9F;  // surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) second_min = 0x90;  // overlong
    if (lead == 0xF4) second_max = 0x8F;  // beyond U+10FFFF
  } else {
    return -1;
  }
  for (int i = 1; i < length; ++i) {
    if (pos + i >= bytes.size()) return -i;
    const unsigned char b = byte(pos + i);
    const unsigned char lo = i == 1 ? second_min : 0x80;
    const unsigned char hi = i == 1 ? second_max : 0xBF;
    if (b < lo || b > hi) return -i;
  }
  return length;
}

}  // namespace

char32_t Next(std::string_view text, size_t& pos) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(pos);
  const size_t length = SequenceLength(lead);
  char32_t cp;
  switch (length) {
    case 1:
      cp = lead;
      break;
    case 2:
      cp = lead & 0x1F;
      break;
    case 3:
      cp = lead & 0x0F;
      break;
    default:
      cp = lead & 0x07;
      break;
  }
  for (size_t i = 1; i < length && pos + i < text.size(); ++i)
    cp = (cp << 6) | (byte(pos + i) & 0x3F);
  pos += length;
  return cp;
}

size_t PreviousStart(std::string_view text, size_t end) {
  size_t start = end - 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
  return start;
}

void Append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string Encode(char32_t code_point) {
  std::string out;
  Append(out, code_point);
  return out;
}

bool IsValid(std::string_view bytes) {
  for (size_t pos = 0; pos < bytes.size();) {
    const int length = ValidSequenceLength(bytes, pos);
    if (length < 0) return false;
    pos += length;
  }
  return true;
}

std::string ToValidUtf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (size_t pos = 0; pos < bytes.size();) {
    const int length = ValidSequenceLength(bytes, pos);
    if (length > 0) {
      out.append(bytes.substr(pos, length));
      pos += length;
    } else {
      Append(out, kReplacementChar);
      pos += -length;
    }
  }
  return out;
}

}  // namespace qshard::utf8
