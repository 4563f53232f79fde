// The token stream of an evaluation or calibration text: the file's lines (optionally a
// 1-based inclusive range such as "2180-4358") joined with "\n\n" and tokenized once without
// BOS (reference.md), with the model's own tokenizer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tokenizer/tokenizer.h"

namespace qshard {

struct LineRange {
  int first = 1;
  int last = 0;  // 0: through the end of the file
};

// "A-B", "A-" or "" (all lines); errors name `flag`.
absl::StatusOr<LineRange> ParseLineRange(const std::string& text, const std::string& flag);

absl::StatusOr<std::vector<int32_t>> TokenizeTextFile(const Tokenizer& tokenizer, const std::string& path,
                                                      LineRange lines, bool prepend_bos = false);

}  // namespace qshard
