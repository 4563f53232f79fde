#include "core/format_bytes.h"

#include "absl/strings/str_format.h"

namespace qshard {

std::string FormatBytes(uint64_t bytes) {
  if (bytes >= (uint64_t{1} << 30)) return absl::StrFormat("%.2f GB", bytes / 1e9);
  return absl::StrFormat("%.1f MB", bytes / 1e6);
}

}  // namespace qshard
