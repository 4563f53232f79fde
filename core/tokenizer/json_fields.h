// Typed access to the fields of Hugging Face tokenizer/config JSON files. Every error names
// the field by its path ("model.merges[3]") so the loader only has to prefix the file name.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "core/env.h"
#include "nlohmann/json.hpp"

namespace qshard::json_fields {

using Json = nlohmann::json;

// "parent.key", or "key" at the top level.
std::string FieldPath(std::string_view parent, std::string_view key);
std::string IndexPath(std::string_view parent, size_t index);

// Parses `text`; a syntax error names `source` and the byte position.
absl::StatusOr<Json> Parse(std::string_view text, std::string_view source);
// Reads and parses a whole file; errors name the path.
absl::StatusOr<Json> ReadFile(const std::string& path, Env* env = Env::Default());

// obj[key], or nullptr where the key is absent or obj is not an object.
const Json* Find(const Json& obj, std::string_view key);
// True where the key is absent or null (how Hugging Face writes "not set").
bool IsUnset(const Json& obj, std::string_view key);

absl::StatusOr<std::string> GetString(const Json& obj, std::string_view key,
                                      std::string_view parent);
absl::StatusOr<std::optional<std::string>> GetOptionalString(const Json& obj, std::string_view key,
                                                             std::string_view parent);
absl::StatusOr<bool> GetBool(const Json& obj, std::string_view key, std::string_view parent,
                             bool default_value);
absl::StatusOr<int64_t> GetInt(const Json& obj, std::string_view key, std::string_view parent);
absl::StatusOr<int64_t> GetIntOr(const Json& obj, std::string_view key, std::string_view parent,
                                 int64_t default_value);
absl::StatusOr<const Json*> GetArray(const Json& obj, std::string_view key,
                                     std::string_view parent);
absl::StatusOr<const Json*> GetObject(const Json& obj, std::string_view key,
                                      std::string_view parent);

// The single code point of a string field (Metaspace's "replacement", Strip's "content").
absl::StatusOr<char32_t> GetChar(const Json& obj, std::string_view key, std::string_view parent);

}  // namespace qshard::json_fields
