#include "core/tokenizer/json_fields.h"


#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status.h"
#include "core/tokenizer/utf8.h"

namespace qshard::json_fields {
namespace {

absl::Status WrongType(std::string_view path, std::string_view expected, const Json& value) {
  return absl::InvalidArgumentError(
      absl::StrFormat("field '%s': expected %s, got %s", path, expected, value.type_name()));
}

absl::Status Missing(std::string_view path) {
  return absl::InvalidArgumentError(absl::StrFormat("field '%s' is missing", path));
}

}  // namespace

std::string FieldPath(std::string_view parent, std::string_view key) {
  return parent.empty() ? std::string(key) : absl::StrFormat("%s.%s", parent, key);
}

std::string IndexPath(std::string_view parent, size_t index) {
  return absl::StrFormat("%s[%d]", parent, index);
}

absl::StatusOr<Json> Parse(std::string_view text, std::string_view source) {
  // nlohmann reports syntax errors by exception; they stop here.
  try {
    return Json::parse(text.begin(), text.end());
  } catch (const Json::parse_error& e) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: invalid JSON at byte %d: %s", source, e.byte, e.what()));
  }
}

absl::StatusOr<Json> ReadFile(const std::string& path, Env* env) {
  QSHARD_ASSIGN_OR_RETURN(const std::string text, env->ReadFileToString(path));
  return Parse(text, path);
}

const Json* Find(const Json& obj, std::string_view key) {
  if (!obj.is_object()) return nullptr;
  const auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

bool IsUnset(const Json& obj, std::string_view key) {
  const Json* value = Find(obj, key);
  return value == nullptr || value->is_null();
}

absl::StatusOr<std::string> GetString(const Json& obj, std::string_view key,
                                      std::string_view parent) {
  const std::string path = FieldPath(parent, key);
  const Json* value = Find(obj, key);
  if (value == nullptr) return Missing(path);
  if (!value->is_string()) return WrongType(path, "a string", *value);
  return value->get<std::string>();
}

absl::StatusOr<std::optional<std::string>> GetOptionalString(const Json& obj, std::string_view key,
                                                             std::string_view parent) {
  if (IsUnset(obj, key)) return std::optional<std::string>();
  const Json& value = *Find(obj, key);
  if (!value.is_string()) return WrongType(FieldPath(parent, key), "a string or null", value);
  return std::optional<std::string>(value.get<std::string>());
}

absl::StatusOr<bool> GetBool(const Json& obj, std::string_view key, std::string_view parent,
                             bool default_value) {
  if (IsUnset(obj, key)) return default_value;
  const Json& value = *Find(obj, key);
  if (!value.is_boolean()) return WrongType(FieldPath(parent, key), "true or false", value);
  return value.get<bool>();
}

absl::StatusOr<int64_t> GetInt(const Json& obj, std::string_view key, std::string_view parent) {
  const std::string path = FieldPath(parent, key);
  const Json* value = Find(obj, key);
  if (value == nullptr) return Missing(path);
  if (!value->is_number_integer()) return WrongType(path, "an integer", *value);
  return value->get<int64_t>();
}

absl::StatusOr<int64_t> GetIntOr(const Json& obj, std::string_view key, std::string_view parent,
                                 int64_t default_value) {
  if (IsUnset(obj, key)) return default_value;
  return GetInt(obj, key, parent);
}

absl::StatusOr<const Json*> GetArray(const Json& obj, std::string_view key,
                                     std::string_view parent) {
  const std::string path = FieldPath(parent, key);
  const Json* value = Find(obj, key);
  if (value == nullptr) return Missing(path);
  if (!value->is_array()) return WrongType(path, "an array", *value);
  return value;
}

absl::StatusOr<const Json*> GetObject(const Json& obj, std::string_view key,
                                      std::string_view parent) {
  const std::string path = FieldPath(parent, key);
  const Json* value = Find(obj, key);
  if (value == nullptr) return Missing(path);
  if (!value->is_object()) return WrongType(path, "an object", *value);
  return value;
}

absl::StatusOr<char32_t> GetChar(const Json& obj, std::string_view key, std::string_view parent) {
  absl::StatusOr<std::string> text = GetString(obj, key, parent);
  if (!text.ok()) return text.status();
  // nlohmann has checked the string is valid UTF-8.
  size_t end = 0;
  const char32_t first = text->empty() ? 0 : utf8::Next(*text, end);
  if (text->empty() || end != text->size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("field '", FieldPath(parent, key), "': expected a single character"));
  }
  return first;
}

}  // namespace qshard::json_fields
