#include "core/tokenizer/normalizer.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "core/status.h"
#include "core/tokenizer/json_fields.h"
#include "core/tokenizer/unicode_classes.h"

namespace qshard {

using json_fields::FieldPath;
using json_fields::Json;

absl::StatusOr<std::string> StringPattern(const Json& owner, std::string_view field) {
  QSHARD_ASSIGN_OR_RETURN(const Json* pattern, json_fields::GetObject(owner, "pattern", field));
  const std::string path = FieldPath(field, "pattern");
  if (json_fields::Find(*pattern, "Regex") != nullptr) {
    return absl::UnimplementedError(
        absl::StrCat("field '", path, "': Regex patterns are not supported (only String)"));
  }
  return json_fields::GetString(*pattern, "String", path);
}

absl::StatusOr<Normalizer> Normalizer::FromJson(const Json& spec, std::string_view field) {
  Normalizer normalizer;
  if (!spec.is_null()) QSHARD_RETURN_IF_ERROR(AppendSteps(spec, field, normalizer.steps_));
  return normalizer;
}

absl::Status Normalizer::AppendSteps(const Json& spec, std::string_view field,
                                     std::vector<Step>& steps) {
  QSHARD_ASSIGN_OR_RETURN(const std::string type, json_fields::GetString(spec, "type", field));
  if (type == "Sequence") {
    const std::string list_path = FieldPath(field, "normalizers");
    QSHARD_ASSIGN_OR_RETURN(const Json* list, json_fields::GetArray(spec, "normalizers", field));
    for (size_t i = 0; i < list->size(); ++i) {
      QSHARD_RETURN_IF_ERROR(AppendSteps((*list)[i], json_fields::IndexPath(list_path, i), steps));
    }
    return absl::OkStatus();
  }
  Step step;
  if (type == "Prepend") {
    step.kind = Step::Kind::kPrepend;
    QSHARD_ASSIGN_OR_RETURN(step.content, json_fields::GetString(spec, "prepend", field));
  } else if (type == "Replace") {
    step.kind = Step::Kind::kReplace;
    QSHARD_ASSIGN_OR_RETURN(step.pattern, StringPattern(spec, field));
    QSHARD_ASSIGN_OR_RETURN(step.content, json_fields::GetString(spec, "content", field));
  } else if (type == "Strip") {
    step.kind = Step::Kind::kStrip;
    QSHARD_ASSIGN_OR_RETURN(step.strip_left, json_fields::GetBool(spec, "strip_left", field, true));
    QSHARD_ASSIGN_OR_RETURN(step.strip_right,
                            json_fields::GetBool(spec, "strip_right", field, true));
  } else {
    return absl::UnimplementedError(absl::StrCat("field '", FieldPath(field, "type"),
                                                 "': unsupported normalizer '", type, "'"));
  }
  steps.push_back(std::move(step));
  return absl::OkStatus();
}

std::string Normalizer::Apply(const Step& step, std::string text) {
  switch (step.kind) {
    case Step::Kind::kPrepend:
      // Hugging Face leaves empty text empty.
      return text.empty() ? text : step.content + text;
    case Step::Kind::kReplace:
      if (step.pattern.empty()) return text;
      return absl::StrReplaceAll(text, {{step.pattern, step.content}});
    case Step::Kind::kStrip: {
      const size_t begin = step.strip_left ? unicode::LeadingWhitespaceLength(text) : 0;
      const std::string_view rest = std::string_view(text).substr(begin);
      const size_t length = step.strip_right ? unicode::TrailingWhitespaceStart(rest) : rest.size();
      return std::string(rest.substr(0, length));
    }
  }
  return text;
}

std::string Normalizer::Normalize(std::string_view text) const {
  std::string result(text);
  for (const Step& step : steps_) result = Apply(step, std::move(result));
  return result;
}

}  // namespace qshard
