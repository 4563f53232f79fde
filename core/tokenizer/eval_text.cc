#include "core/tokenizer/eval_text.h"

#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace qshard {

absl::StatusOr<std::string> ReadEvalText(const std::string& path, int first_line, int last_line, Env* env) {
  absl::StatusOr<std::string> read = env->ReadFileToString(path);
  if (!read.ok()) return read.status();
  const std::string text = *std::move(read);

  std::vector<std::string_view> lines;
  for (size_t begin = 0; begin < text.size();) {
    size_t end = text.find('\n', begin);
    const size_t next = end == std::string::npos ? text.size() : end + 1;
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + begin, end - begin);
    if (line.ends_with('\r')) line.remove_suffix(1);
    lines.push_back(line);
    begin = next;
  }
  const int count = static_cast<int>(lines.size());
  const int last = last_line == 0 ? count : last_line;
  if (first_line < 1 || last < first_line || last > count) {
    return absl::OutOfRangeError(absl::StrCat(path, ": lines ", first_line, "..", last_line,
                                              " outside the file's ", count, " lines"));
  }
  std::string joined;
  for (int i = first_line; i <= last; ++i) {
    if (i > first_line) joined += "\n\n";
    joined += lines[i - 1];
  }
  return joined;
}

}  // namespace qshard
