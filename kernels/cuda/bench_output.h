// What the standalone CUDA benchmarks share for their output: JSON string escaping and the
// UTC timestamp every row carries.
#pragma once

#include <ctime>
#include <string>

namespace qshard::gpu {

inline std::string JsonEscape(const std::string& text) {
  std::string escaped;
  for (char ch : text) {
    if (ch == '"' || ch == '\\') escaped += '\\';
    if (static_cast<unsigned char>(ch) >= 0x20) escaped += ch;
  }
  return escaped;
}

// Now, as 2026-12-06T08:30:00Z.
inline std::string UtcTimestamp() {
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return date;
}

}  // namespace qshard::gpu
