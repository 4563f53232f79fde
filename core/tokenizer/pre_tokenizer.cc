#include "core/tokenizer/pre_tokenizer.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "core/status.h"
#include "core/tokenizer/byte_level.h"
#include "core/tokenizer/json_fields.h"
#include "core/tokenizer/normalizer.h"
#include "core/tokenizer/unicode_classes.h"
#include "core/tokenizer/utf8.h"

namespace qshard {
namespace {

using json_fields::FieldPath;
using json_fields::Json;

// The GPT-2 pattern as Hugging Face files spell it in Split pre-tokenizers.
constexpr std::string_view kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Each whitespace character is its own match (WhitespaceSplit removes them).
std::vector<Segment> FindWhitespace(std::string_view text) {
  std::vector<Segment> segments;
  for (size_t pos = 0; pos < text.size();) {
    const size_t begin = pos;
    const bool is_space = unicode::IsWhitespace(utf8::Next(text, pos));
    if (!is_space && !segments.empty() && !segments.back().is_match) {
      segments.back().end = pos;
    } else {
      segments.push_back({begin, pos, is_space});
    }
  }
  return segments;
}

void AppendPieces(const TextPiece& parent, const std::vector<Segment>& pieces,
                  std::vector<TextPiece>& out) {
  for (const Segment& s : pieces) {
    out.push_back(
        {parent.text.substr(s.begin, s.end - s.begin), parent.at_input_start && s.begin == 0});
  }
}

}  // namespace

PreTokenizer PreTokenizer::ByteLevel(bool add_prefix_space) {
  PreTokenizer pre_tokenizer;
  Step step;
  step.kind = Step::Kind::kByteLevel;
  step.add_prefix_space = add_prefix_space;
  pre_tokenizer.steps_.push_back(step);
  return pre_tokenizer;
}

absl::StatusOr<PreTokenizer> PreTokenizer::FromJson(const Json& spec, std::string_view field) {
  PreTokenizer pre_tokenizer;
  if (!spec.is_null()) QSHARD_RETURN_IF_ERROR(AppendSteps(spec, field, pre_tokenizer.steps_));
  return pre_tokenizer;
}

absl::Status PreTokenizer::AppendSteps(const Json& spec, std::string_view field,
                                       std::vector<Step>& steps) {
  QSHARD_ASSIGN_OR_RETURN(const std::string type, json_fields::GetString(spec, "type", field));
  if (type == "Sequence") {
    const std::string list_path = FieldPath(field, "pretokenizers");
    QSHARD_ASSIGN_OR_RETURN(const Json* list, json_fields::GetArray(spec, "pretokenizers", field));
    for (size_t i = 0; i < list->size(); ++i) {
      QSHARD_RETURN_IF_ERROR(AppendSteps((*list)[i], json_fields::IndexPath(list_path, i), steps));
    }
    return absl::OkStatus();
  }
  Step step;
  if (type == "ByteLevel") {
    step.kind = Step::Kind::kByteLevel;
    QSHARD_ASSIGN_OR_RETURN(step.add_prefix_space,
                            json_fields::GetBool(spec, "add_prefix_space", field, true));
    QSHARD_ASSIGN_OR_RETURN(step.use_regex, json_fields::GetBool(spec, "use_regex", field, true));
  } else if (type == "Metaspace") {
    step.kind = Step::Kind::kMetaspace;
    QSHARD_ASSIGN_OR_RETURN(const char32_t replacement,
                            json_fields::GetChar(spec, "replacement", field));
    step.replacement = utf8::Encode(replacement);
    QSHARD_ASSIGN_OR_RETURN(step.split, json_fields::GetBool(spec, "split", field, true));
    QSHARD_ASSIGN_OR_RETURN(const std::optional<std::string> scheme,
                            json_fields::GetOptionalString(spec, "prepend_scheme", field));
    if (scheme.has_value()) {
      if (*scheme == "always") {
        step.prepend = Step::Prepend::kAlways;
      } else if (*scheme == "first") {
        step.prepend = Step::Prepend::kFirst;
      } else if (*scheme == "never") {
        step.prepend = Step::Prepend::kNever;
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            "field '", FieldPath(field, "prepend_scheme"), "': unknown scheme '", *scheme, "'"));
      }
    } else {
      // Files older than prepend_scheme say add_prefix_space instead.
      QSHARD_ASSIGN_OR_RETURN(const bool add_prefix_space,
                              json_fields::GetBool(spec, "add_prefix_space", field, true));
      step.prepend = add_prefix_space ? Step::Prepend::kAlways : Step::Prepend::kNever;
    }
  } else if (type == "Split") {
    step.kind = Step::Kind::kSplit;
    QSHARD_ASSIGN_OR_RETURN(const Json* pattern, json_fields::GetObject(spec, "pattern", field));
    const Json* regex = json_fields::Find(*pattern, "Regex");
    if (regex != nullptr && regex->is_string() && regex->get<std::string>() == kGpt2Regex) {
      step.gpt2_regex = true;
    } else if (regex != nullptr) {
      return absl::UnimplementedError(
          absl::StrCat("field '", FieldPath(field, "pattern"),
                       "': only String patterns and the GPT-2 regex are supported in Split"));
    } else {
      QSHARD_ASSIGN_OR_RETURN(step.pattern, StringPattern(spec, field));
    }
    QSHARD_ASSIGN_OR_RETURN(const std::string behavior,
                            json_fields::GetString(spec, "behavior", field));
    auto parsed = ParseSplitBehavior(behavior);
    if (!parsed.ok()) return WithContext(parsed.status(), FieldPath(field, "behavior"));
    step.behavior = *parsed;
    QSHARD_ASSIGN_OR_RETURN(step.invert, json_fields::GetBool(spec, "invert", field, false));
  } else if (type == "WhitespaceSplit") {
    step.kind = Step::Kind::kWhitespaceSplit;
  } else {
    return absl::UnimplementedError(absl::StrCat("field '", FieldPath(field, "type"),
                                                 "': unsupported pre-tokenizer '", type, "'"));
  }
  steps.push_back(std::move(step));
  return absl::OkStatus();
}

void PreTokenizer::Apply(const Step& step, TextPiece piece, std::vector<TextPiece>& out) {
  switch (step.kind) {
    case Step::Kind::kByteLevel: {
      if (step.add_prefix_space && !piece.text.starts_with(' ')) piece.text = " " + piece.text;
      std::vector<TextPiece> words;
      if (step.use_regex) {
        AppendPieces(piece, FindGpt2Matches(piece.text), words);
      } else {
        words.push_back(std::move(piece));
      }
      for (TextPiece& word : words) {
        out.push_back({byte_level::Encode(word.text), word.at_input_start});
      }
      return;
    }
    case Step::Kind::kMetaspace: {
      piece.text = absl::StrReplaceAll(piece.text, {{" ", step.replacement}});
      const bool prepend = step.prepend == Step::Prepend::kAlways ||
                           (step.prepend == Step::Prepend::kFirst && piece.at_input_start);
      if (prepend && !piece.text.starts_with(step.replacement)) {
        piece.text = step.replacement + piece.text;
      }
      if (!step.split) {
        if (!piece.text.empty()) out.push_back(std::move(piece));
        return;
      }
      AppendPieces(piece,
                   ApplySplitBehavior(FindStringMatches(piece.text, step.replacement),
                                      SplitBehavior::kMergedWithNext, false),
                   out);
      return;
    }
    case Step::Kind::kSplit: {
      std::vector<Segment> segments = step.gpt2_regex ? FindGpt2Matches(piece.text)
                                                      : FindStringMatches(piece.text, step.pattern);
      AppendPieces(piece, ApplySplitBehavior(std::move(segments), step.behavior, step.invert), out);
      return;
    }
    case Step::Kind::kWhitespaceSplit:
      AppendPieces(piece,
                   ApplySplitBehavior(FindWhitespace(piece.text), SplitBehavior::kRemoved, false),
                   out);
      return;
  }
}

void PreTokenizer::Split(TextPiece piece, std::vector<std::string>& words) const {
  std::vector<TextPiece> pieces;
  pieces.push_back(std::move(piece));
  std::vector<TextPiece> next;
  for (const Step& step : steps_) {
    next.clear();
    for (TextPiece& p : pieces) Apply(step, std::move(p), next);
    pieces.swap(next);
  }
  for (TextPiece& p : pieces) {
    if (!p.text.empty()) words.push_back(std::move(p.text));
  }
}

std::string PreTokenizer::Describe() const {
  if (steps_.empty()) return "no pre-tokenizer";
  std::vector<std::string> names;
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Step::Kind::kByteLevel:
        names.push_back("byte-level");
        break;
      case Step::Kind::kMetaspace:
        names.push_back("metaspace");
        break;
      case Step::Kind::kSplit:
        names.push_back("split");
        break;
      case Step::Kind::kWhitespaceSplit:
        names.push_back("whitespace-split");
        break;
    }
  }
  return absl::StrJoin(names, "+");
}

bool PreTokenizer::has_byte_level() const {
  for (const Step& step : steps_) {
    if (step.kind == Step::Kind::kByteLevel) return true;
  }
  return false;
}

}  // namespace qshard
