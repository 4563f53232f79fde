// UTF-8 handling and the Unicode class table: encoding round trips over every code point,
// the lossy conversion's maximal-subpart rule, and class spot checks (including a letter new
// in Unicode 16, which Hugging Face's Oniguruma knows and Debian's Python does not).
#include <cstdint>
#include <string>

#include "core/tokenizer/byte_level.h"
#include "core/tokenizer/unicode_classes.h"
#include "core/tokenizer/utf8.h"
#include "gtest/gtest.h"

namespace qshard {
namespace {

TEST(Utf8Test, EveryCodePointRoundTrips) {
  for (char32_t cp = 0; cp <= 0x10FFFF; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    const std::string encoded = utf8::Encode(cp);
    ASSERT_TRUE(utf8::IsValid(encoded)) << std::hex << static_cast<uint32_t>(cp);
    size_t pos = 0;
    ASSERT_EQ(utf8::Next(encoded, pos), cp);
    ASSERT_EQ(pos, encoded.size());
    ASSERT_EQ(utf8::SequenceLength(static_cast<unsigned char>(encoded[0])), encoded.size());
  }
}

TEST(Utf8Test, LossyConversionReplacesMaximalInvalidSubparts) {
  const std::string fffd = "\uFFFD";
  EXPECT_EQ(utf8::ToValidUtf8("plain ascii"), "plain ascii");
  EXPECT_EQ(utf8::ToValidUtf8("\xff"), fffd);
  EXPECT_EQ(utf8::ToValidUtf8("a\xe2\x82"
                              "b"),
            "a" + fffd + "b");                                       // truncated: one U+FFFD
  EXPECT_EQ(utf8::ToValidUtf8("\xe2\x82\xac"), "\u20ac");            // complete euro sign
  EXPECT_EQ(utf8::ToValidUtf8("\xc0\xaf"), fffd + fffd);             // overlong lead
  EXPECT_EQ(utf8::ToValidUtf8("\xed\xa0\x80"), fffd + fffd + fffd);  // surrogate
  EXPECT_EQ(utf8::ToValidUtf8("\xf4\x90\x80\x80"), fffd + fffd + fffd + fffd);  // > U+10FFFF
  EXPECT_EQ(utf8::ToValidUtf8("\xf0\x9f\x98"), fffd);  // truncated at the end
  EXPECT_FALSE(utf8::IsValid("\x80"));
}

TEST(UnicodeClassesTest, SpotChecks) {
  for (char32_t cp : {U'a', U'Z', U'\u00e9', U'\u00df', U'\u65e5', U'\u0416', U'\u1c89'}) {
    EXPECT_TRUE(unicode::IsLetter(cp)) << std::hex << static_cast<uint32_t>(cp);
    EXPECT_FALSE(unicode::IsNumber(cp) || unicode::IsWhitespace(cp))
        << std::hex << static_cast<uint32_t>(cp);
  }
  for (char32_t cp : {U'0', U'9', U'\u0663', U'\u00bd', U'\u216b', U'\u00b2'}) {
    EXPECT_TRUE(unicode::IsNumber(cp)) << std::hex << static_cast<uint32_t>(cp);
    EXPECT_FALSE(unicode::IsLetter(cp)) << std::hex << static_cast<uint32_t>(cp);
  }
  for (char32_t cp : {U' ', U'\t', U'\n', U'\r', U'\u0085', U'\u00a0', U'\u2028', U'\u3000'}) {
    EXPECT_TRUE(unicode::IsWhitespace(cp)) << std::hex << static_cast<uint32_t>(cp);
  }
  for (char32_t cp : {U'_', U'\'', U'=', U'\u0301', U'\u2581', U'\U0001F600', U'\u200b'}) {
    EXPECT_FALSE(unicode::IsLetter(cp) || unicode::IsNumber(cp) || unicode::IsWhitespace(cp))
        << std::hex << static_cast<uint32_t>(cp);
  }
}

TEST(ByteLevelTest, MappingIsABijectionOntoPrintableCharacters) {
  EXPECT_EQ(byte_level::Encode(" "), "\u0120");   // 'Ġ'
  EXPECT_EQ(byte_level::Encode("\n"), "\u010a");  // 'Ċ'
  EXPECT_EQ(byte_level::Encode("A~"), "A~");
  for (int b = 0; b < 256; ++b) {
    const char32_t cp = byte_level::ByteToChar(static_cast<unsigned char>(b));
    EXPECT_FALSE(unicode::IsWhitespace(cp)) << b;
    ASSERT_EQ(byte_level::CharToByte(cp), b);
  }
  EXPECT_EQ(byte_level::CharToByte(U'\u0144'), std::nullopt);  // one past the 68 extra characters
}

}  // namespace
}  // namespace qshard
