#include "worker/export/module_group_sizes.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace qshard {
namespace {

constexpr char kInclude[] = "+:";
constexpr char kExclude[] = "-:";

std::string RegexEscape(const std::string& name) {
  std::string escaped;
  for (const char c : name) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) escaped.push_back('\\');
    escaped.push_back(c);
  }
  return escaped;
}

}  // namespace

nlohmann::json DynamicGroupSizeEntries(const std::map<std::string, int>& overrides) {
  nlohmann::json dynamic = nlohmann::json::object();
  for (const auto& [module, group_size] : overrides)
    dynamic[absl::StrCat(kInclude, "^", RegexEscape(module), "$")] = {{"group_size", group_size}};
  return dynamic;
}

absl::StatusOr<ModuleGroupSizes> ModuleGroupSizes::FromConfig(const nlohmann::json& config) {
  ModuleGroupSizes sizes;
  const auto base = config.find("group_size");
  if (base == config.end()) return sizes;
  if (!base->is_number_integer()) return absl::InvalidArgumentError("quantization_config.group_size: not an integer");
  sizes.base_ = base->get<int>();
  const auto dynamic = config.find("dynamic");
  if (dynamic == config.end() || dynamic->is_null()) return sizes;
  if (!dynamic->is_object()) return absl::InvalidArgumentError("quantization_config.dynamic: not an object");
  for (const auto& [key, value] : dynamic->items()) {
    const std::string field = absl::StrCat("quantization_config.dynamic[\"", key, "\"]");
    Rule rule;
    std::string pattern = key;
    if (absl::StartsWith(key, kExclude)) {
      rule.exclude = true;
      pattern = key.substr(2);
    } else if (absl::StartsWith(key, kInclude)) {
      pattern = key.substr(2);
    }
    try {
      rule.pattern = std::regex(pattern, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": not a regular expression (", e.what(), ")"));
    }
    if (!value.is_object()) return absl::InvalidArgumentError(absl::StrCat(field, ": not an object"));
    const auto group_size = value.find("group_size");
    if (group_size != value.end()) {
      if (!group_size->is_number_integer())
        return absl::InvalidArgumentError(absl::StrCat(field, ".group_size: not an integer"));
      rule.group_size = group_size->get<int>();
    }
    sizes.rules_.push_back(std::move(rule));
  }
  return sizes;
}

std::optional<int> ModuleGroupSizes::Of(const std::string& module) const {
  if (!base_) return std::nullopt;
  for (const Rule& rule : rules_) {
    // Python's re.match: anchored at the start only.
    if (!std::regex_search(module, rule.pattern, std::regex_constants::match_continuous)) continue;
    if (rule.exclude) return std::nullopt;
    return rule.group_size.value_or(*base_);
  }
  return base_;
}

}  // namespace qshard
