#include "core/tokenizer/special_token_config.h"

#include <filesystem>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status.h"
#include "core/tokenizer/json_fields.h"

namespace qshard {
namespace {

using json_fields::Json;

constexpr const char* kTokenFields[] = {"bos_token", "eos_token", "unk_token", "pad_token",
                                        "sep_token", "cls_token", "mask_token"};

// A token field is a string, an AddedToken-like object {"content": ...}, or null.
absl::StatusOr<std::optional<std::string>> TokenString(const Json& value, std::string_view path) {
  if (value.is_null()) return std::optional<std::string>();
  if (value.is_string()) return std::optional<std::string>(value.get<std::string>());
  if (value.is_object()) {
    QSHARD_ASSIGN_OR_RETURN(std::string content, json_fields::GetString(value, "content", path));
    return std::optional<std::string>(std::move(content));
  }
  return absl::InvalidArgumentError(
      absl::StrFormat("field '%s': expected a token string or {\"content\": ...}", path));
}

// Reads the token fields of tokenizer_config.json or special_tokens_map.json into `config`,
// keeping what an earlier file already said.
absl::Status ReadTokenFields(const Json& root, const std::string& source,
                             SpecialTokenConfig& config) {
  for (const char* field : kTokenFields) {
    const Json* value = json_fields::Find(root, field);
    if (value == nullptr) continue;
    QSHARD_ASSIGN_OR_RETURN(std::optional<std::string> token, TokenString(*value, field));
    if (!token.has_value()) continue;
    config.special_tokens.push_back(*token);
    if (std::string_view(field) == "bos_token" && !config.bos_token.has_value()) {
      config.bos_token = *token;
      config.bos_source = source;
    }
    if (std::string_view(field) == "eos_token" && !config.eos_token.has_value()) {
      config.eos_token = *token;
      config.eos_source = source;
    }
  }
  if (!json_fields::IsUnset(root, "additional_special_tokens")) {
    QSHARD_ASSIGN_OR_RETURN(const Json* list,
                            json_fields::GetArray(root, "additional_special_tokens", ""));
    for (size_t i = 0; i < list->size(); ++i) {
      QSHARD_ASSIGN_OR_RETURN(
          std::optional<std::string> token,
          TokenString((*list)[i], json_fields::IndexPath("additional_special_tokens", i)));
      if (token.has_value()) config.special_tokens.push_back(*token);
    }
  }
  return absl::OkStatus();
}

absl::Status ReadAddedTokensDecoder(const Json& root, SpecialTokenConfig& config) {
  if (json_fields::IsUnset(root, "added_tokens_decoder")) return absl::OkStatus();
  QSHARD_ASSIGN_OR_RETURN(const Json* decoder,
                          json_fields::GetObject(root, "added_tokens_decoder", ""));
  for (const auto& [id_text, spec] : decoder->items()) {
    const std::string path = absl::StrCat("added_tokens_decoder.", id_text);
    AddedToken token;
    if (!absl::SimpleAtoi(id_text, &token.id) || token.id < 0) {
      return absl::InvalidArgumentError(absl::StrCat("field '", path, "': key is not a token id"));
    }
    QSHARD_ASSIGN_OR_RETURN(token.content, json_fields::GetString(spec, "content", path));
    QSHARD_ASSIGN_OR_RETURN(token.single_word,
                            json_fields::GetBool(spec, "single_word", path, false));
    QSHARD_ASSIGN_OR_RETURN(token.lstrip, json_fields::GetBool(spec, "lstrip", path, false));
    QSHARD_ASSIGN_OR_RETURN(token.rstrip, json_fields::GetBool(spec, "rstrip", path, false));
    QSHARD_ASSIGN_OR_RETURN(token.special, json_fields::GetBool(spec, "special", path, false));
    QSHARD_ASSIGN_OR_RETURN(token.normalized,
                            json_fields::GetBool(spec, "normalized", path, !token.special));
    config.added_tokens_decoder.push_back(std::move(token));
  }
  return absl::OkStatus();
}

// bos_token_id / eos_token_id: an integer, a list of integers (the first counts), or null.
absl::StatusOr<std::optional<int64_t>> ConfigTokenId(const Json& root, std::string_view key) {
  if (json_fields::IsUnset(root, key)) return std::optional<int64_t>();
  const Json& value = *json_fields::Find(root, key);
  if (value.is_number_integer()) return std::optional<int64_t>(value.get<int64_t>());
  if (value.is_array() && !value.empty() && value[0].is_number_integer()) {
    return std::optional<int64_t>(value[0].get<int64_t>());
  }
  return absl::InvalidArgumentError(
      absl::StrFormat("field '%s': expected a token id or a list of token ids", key));
}

// Runs `read` on dir/name if that file exists, prefixing its errors with the path.
template <typename Reader>
absl::Status IfPresent(Env* env, const std::string& dir, const char* name, Reader read) {
  const std::string path = (std::filesystem::path(dir) / name).string();
  if (!env->FileExists(path)) return absl::OkStatus();
  absl::StatusOr<Json> root = json_fields::ReadFile(path, env);
  if (!root.ok()) return root.status();
  return WithContext(read(*root, path), path);
}

}  // namespace

absl::StatusOr<SpecialTokenConfig> ReadSpecialTokenConfig(const std::string& dir, Env* env) {
  SpecialTokenConfig config;
  QSHARD_RETURN_IF_ERROR(IfPresent(env, dir, "tokenizer_config.json",
                                   [&](const Json& root, const std::string& path) -> absl::Status {
                                     QSHARD_RETURN_IF_ERROR(ReadTokenFields(root, path, config));
                                     return ReadAddedTokensDecoder(root, config);
                                   }));
  QSHARD_RETURN_IF_ERROR(IfPresent(env, dir, "special_tokens_map.json",
                                   [&](const Json& root, const std::string& path) -> absl::Status {
                                     return ReadTokenFields(root, path, config);
                                   }));
  QSHARD_RETURN_IF_ERROR(
      IfPresent(env, dir, "config.json", [&](const Json& root, const std::string&) -> absl::Status {
        QSHARD_ASSIGN_OR_RETURN(config.bos_token_id, ConfigTokenId(root, "bos_token_id"));
        QSHARD_ASSIGN_OR_RETURN(config.eos_token_id, ConfigTokenId(root, "eos_token_id"));
        return absl::OkStatus();
      }));
  return config;
}

}  // namespace qshard
