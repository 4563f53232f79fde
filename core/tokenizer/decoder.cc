#include "core/tokenizer/decoder.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "core/status.h"
#include "core/tokenizer/byte_level.h"
#include "core/tokenizer/json_fields.h"
#include "core/tokenizer/normalizer.h"
#include "core/tokenizer/utf8.h"

namespace qshard {
namespace {

using json_fields::FieldPath;
using json_fields::Json;

// "<0xNN>" -> the byte, else -1.
int ByteToken(std::string_view token) {
  if (token.size() != 6 || !token.starts_with("<0x") || token[5] != '>') return -1;
  int value = 0;
  for (char c : token.substr(3, 2)) {
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else {
      return -1;
    }
    value = value * 16 + digit;
  }
  return value;
}

std::vector<std::string> DecodeByteFallback(std::vector<std::string> tokens) {
  std::vector<std::string> out;
  std::string bytes;
  // A run of byte tokens becomes its text if it is valid UTF-8, else one U+FFFD per byte.
  const auto flush = [&] {
    if (bytes.empty()) return;
    if (utf8::IsValid(bytes)) {
      out.push_back(bytes);
    } else {
      for (size_t i = 0; i < bytes.size(); ++i) out.push_back(utf8::Encode(utf8::kReplacementChar));
    }
    bytes.clear();
  };
  for (std::string& token : tokens) {
    if (const int byte = ByteToken(token); byte >= 0) {
      bytes.push_back(static_cast<char>(byte));
      continue;
    }
    flush();
    out.push_back(std::move(token));
  }
  flush();
  return out;
}

// Each token's characters back to bytes (a token with any character outside the mapping is
// kept as it is), all joined and read as UTF-8 with invalid bytes replaced.
std::string DecodeByteLevel(const std::vector<std::string>& tokens) {
  std::string bytes;
  std::string token_bytes;
  for (const std::string& token : tokens) {
    token_bytes.clear();
    bool mapped = true;
    for (size_t pos = 0; pos < token.size() && mapped;) {
      const auto byte = byte_level::CharToByte(utf8::Next(token, pos));
      if (byte.has_value()) {
        token_bytes.push_back(static_cast<char>(*byte));
      } else {
        mapped = false;
      }
    }
    bytes += mapped ? token_bytes : token;
  }
  return utf8::ToValidUtf8(bytes);
}

std::string StripToken(const std::string& token, char32_t content, int start, int stop) {
  std::vector<char32_t> chars;
  for (size_t pos = 0; pos < token.size();) chars.push_back(utf8::Next(token, pos));
  size_t begin = 0, end = chars.size();
  for (int i = 0; i < start && begin < end && chars[begin] == content; ++i) ++begin;
  for (int i = 0; i < stop && end > begin && chars[end - 1] == content; ++i) --end;
  std::string out;
  for (size_t i = begin; i < end; ++i) utf8::Append(out, chars[i]);
  return out;
}

}  // namespace

Decoder Decoder::ByteLevel() {
  Decoder decoder;
  decoder.present_ = true;
  Step step;
  step.kind = Step::Kind::kByteLevel;
  decoder.steps_.push_back(step);
  return decoder;
}

absl::StatusOr<Decoder> Decoder::FromJson(const Json& spec, std::string_view field) {
  Decoder decoder;
  if (spec.is_null()) return decoder;
  decoder.present_ = true;
  QSHARD_RETURN_IF_ERROR(AppendSteps(spec, field, decoder.steps_));
  return decoder;
}

absl::Status Decoder::AppendSteps(const Json& spec, std::string_view field,
                                  std::vector<Step>& steps) {
  QSHARD_ASSIGN_OR_RETURN(const std::string type, json_fields::GetString(spec, "type", field));
  if (type == "Sequence") {
    const std::string list_path = FieldPath(field, "decoders");
    QSHARD_ASSIGN_OR_RETURN(const Json* list, json_fields::GetArray(spec, "decoders", field));
    for (size_t i = 0; i < list->size(); ++i) {
      QSHARD_RETURN_IF_ERROR(AppendSteps((*list)[i], json_fields::IndexPath(list_path, i), steps));
    }
    return absl::OkStatus();
  }
  Step step;
  if (type == "Replace") {
    step.kind = Step::Kind::kReplace;
    QSHARD_ASSIGN_OR_RETURN(step.pattern, StringPattern(spec, field));
    QSHARD_ASSIGN_OR_RETURN(step.content, json_fields::GetString(spec, "content", field));
  } else if (type == "ByteFallback") {
    step.kind = Step::Kind::kByteFallback;
  } else if (type == "Fuse") {
    step.kind = Step::Kind::kFuse;
  } else if (type == "Strip") {
    step.kind = Step::Kind::kStrip;
    QSHARD_ASSIGN_OR_RETURN(const char32_t content, json_fields::GetChar(spec, "content", field));
    step.content = utf8::Encode(content);
    QSHARD_ASSIGN_OR_RETURN(const int64_t start, json_fields::GetIntOr(spec, "start", field, 0));
    QSHARD_ASSIGN_OR_RETURN(const int64_t stop, json_fields::GetIntOr(spec, "stop", field, 0));
    if (start < 0 || stop < 0 || start > (1 << 20) || stop > (1 << 20)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("field '%s': Strip start/stop out of range", field));
    }
    step.strip_start = static_cast<int>(start);
    step.strip_stop = static_cast<int>(stop);
  } else if (type == "ByteLevel") {
    step.kind = Step::Kind::kByteLevel;
  } else if (type == "Metaspace") {
    step.kind = Step::Kind::kMetaspace;
    QSHARD_ASSIGN_OR_RETURN(const char32_t replacement,
                            json_fields::GetChar(spec, "replacement", field));
    step.content = utf8::Encode(replacement);
    QSHARD_ASSIGN_OR_RETURN(const std::optional<std::string> scheme,
                            json_fields::GetOptionalString(spec, "prepend_scheme", field));
    if (scheme.has_value()) {
      step.metaspace_prepends = *scheme != "never";
    } else {
      QSHARD_ASSIGN_OR_RETURN(step.metaspace_prepends,
                              json_fields::GetBool(spec, "add_prefix_space", field, true));
    }
  } else if (type == "BPEDecoder") {
    step.kind = Step::Kind::kBpe;
    QSHARD_ASSIGN_OR_RETURN(const std::optional<std::string> suffix,
                            json_fields::GetOptionalString(spec, "suffix", field));
    step.content = suffix.value_or("</w>");
  } else {
    return absl::UnimplementedError(
        absl::StrCat("field '", FieldPath(field, "type"), "': unsupported decoder '", type, "'"));
  }
  steps.push_back(std::move(step));
  return absl::OkStatus();
}

std::vector<std::string> Decoder::Apply(const Step& step, std::vector<std::string> tokens) {
  switch (step.kind) {
    case Step::Kind::kReplace:
      for (std::string& token : tokens) {
        if (!step.pattern.empty())
          token = absl::StrReplaceAll(token, {{step.pattern, step.content}});
      }
      return tokens;
    case Step::Kind::kByteFallback:
      return DecodeByteFallback(std::move(tokens));
    case Step::Kind::kFuse:
      return {absl::StrJoin(tokens, "")};
    case Step::Kind::kStrip: {
      size_t pos = 0;
      const char32_t content = utf8::Next(step.content, pos);
      for (std::string& token : tokens) {
        token = StripToken(token, content, step.strip_start, step.strip_stop);
      }
      return tokens;
    }
    case Step::Kind::kByteLevel:
      return {DecodeByteLevel(tokens)};
    case Step::Kind::kMetaspace:
      for (size_t i = 0; i < tokens.size(); ++i) {
        // Hugging Face takes the first token's replacements for the prepended space and drops
        // all of them, not only a leading one.
        const char* space = i == 0 && step.metaspace_prepends ? "" : " ";
        tokens[i] = absl::StrReplaceAll(tokens[i], {{step.content, space}});
      }
      return tokens;
    case Step::Kind::kBpe:
      for (size_t i = 0; i < tokens.size(); ++i) {
        const char* space = i + 1 == tokens.size() ? "" : " ";
        tokens[i] = absl::StrReplaceAll(tokens[i], {{step.content, space}});
      }
      return tokens;
  }
  return tokens;
}

std::string Decoder::Decode(std::vector<std::string> tokens) const {
  if (!present_) return absl::StrJoin(tokens, " ");
  for (const Step& step : steps_) tokens = Apply(step, std::move(tokens));
  return absl::StrJoin(tokens, "");
}

}  // namespace qshard
