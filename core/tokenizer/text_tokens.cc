#include "core/tokenizer/text_tokens.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "core/tokenizer/eval_text.h"

namespace qshard {

absl::StatusOr<LineRange> ParseLineRange(const std::string& text, const std::string& flag) {
  LineRange range;
  if (text.empty()) return range;
  const size_t dash = text.find('-');
  const std::string first = text.substr(0, dash);
  const std::string last = dash == std::string::npos ? first : text.substr(dash + 1);
  const auto bad = absl::InvalidArgumentError(
      absl::StrCat(flag, " '", text, "': expected FIRST-LAST (1-based, inclusive) or FIRST-"));
  if (!absl::SimpleAtoi(first, &range.first) || range.first < 1) return bad;
  if (!last.empty() && (!absl::SimpleAtoi(last, &range.last) || range.last < range.first)) return bad;
  return range;
}

absl::StatusOr<std::vector<int32_t>> TokenizeTextFile(const Tokenizer& tokenizer, const std::string& path,
                                                      LineRange lines, bool prepend_bos) {
  QSHARD_ASSIGN_OR_RETURN(std::string text, ReadEvalText(path, lines.first, lines.last));
  QSHARD_ASSIGN_OR_RETURN(std::vector<int32_t> ids, tokenizer.Encode(text));
  if (prepend_bos) {
    if (tokenizer.bos_id() < 0)
      return absl::FailedPreconditionError("--bos: the model directory names no BOS token");
    ids.insert(ids.begin(), tokenizer.bos_id());
  }
  return ids;
}

}  // namespace qshard
