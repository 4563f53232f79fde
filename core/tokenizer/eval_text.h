// The evaluation/calibration text protocol of ../shared/reference.md: a file's lines, without
// their line breaks, joined with "\n\n" (how WikiText-2 and PTB are fed to the tokenizer).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "core/env.h"

namespace qshard {

// Lines first_line..last_line (1-based, inclusive; last_line 0 = through the end) of `path`.
// A line ends at '\n' (a '\r' before it is dropped too); a final line break does not start
// another line. A range outside the file is an OutOfRange error naming the file.
absl::StatusOr<std::string> ReadEvalText(const std::string& path, int first_line = 1,
                                         int last_line = 0, Env* env = Env::Default());

}  // namespace qshard
