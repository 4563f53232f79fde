// Helpers shared by the tokenizer tests: locating test data (a missing file fails the test
// with its path), reading the golden .ids16 files, and describing the first mismatch.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/tokenizer/tokenizer.h"
#include "gtest/gtest.h"

namespace qshard::testing {

inline constexpr char kDataDir[] = "../shared/data";
inline constexpr char kGoldenDir[] = "tests/reference/tokenizer";

inline std::string DataPath(const std::string& relative) {
  return std::string(kDataDir) + "/" + relative;
}
inline std::string GoldenPath(const std::string& relative) {
  return std::string(kGoldenDir) + "/" + relative;
}

inline ::testing::AssertionResult FileExists(const std::string& path) {
  if (std::filesystem::is_regular_file(path)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "missing test data: " << path << " (working directory "
                                       << std::filesystem::current_path() << ")";
}

inline std::string ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

// Golden ids: raw little-endian uint16, as make_golden.js writes them.
inline std::vector<int32_t> ReadIds16(const std::string& path) {
  const std::string bytes = ReadFileBytes(path);
  std::vector<int32_t> ids(bytes.size() / 2);
  for (size_t i = 0; i < ids.size(); ++i) {
    ids[i] = static_cast<unsigned char>(bytes[2 * i]) |
             (static_cast<unsigned char>(bytes[2 * i + 1]) << 8);
  }
  return ids;
}

// Empty when equal; else the first differing position with the ids (and tokens) around it.
inline std::string FirstMismatch(const Tokenizer& tokenizer, const std::vector<int32_t>& expected,
                                 const std::vector<int32_t>& actual) {
  if (expected == actual) return "";
  size_t pos = 0;
  while (pos < expected.size() && pos < actual.size() && expected[pos] == actual[pos]) ++pos;
  const auto window = [&](const std::vector<int32_t>& ids) {
    std::ostringstream out;
    const size_t begin = pos >= 6 ? pos - 6 : 0;
    for (size_t i = begin; i < ids.size() && i < pos + 6; ++i) {
      out << (i == pos ? " >>" : " ") << ids[i] << "'" << tokenizer.IdToToken(ids[i]).value_or("?")
          << "'";
    }
    return out.str();
  };
  std::ostringstream out;
  out << "first mismatch at token " << pos << " (expected " << expected.size() << " tokens, got "
      << actual.size() << ")\n  expected:" << window(expected) << "\n  actual:  " << window(actual);
  return out.str();
}

}  // namespace qshard::testing
