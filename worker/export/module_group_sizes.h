// Per-module group sizes in a GPTQ quantization_config: the base "group_size" plus GPTQModel's
// "dynamic" overrides, which vLLM and GPTQModel read (docs/checkpoint-format.md). The writer
// records each linear whose group size differs from the base as the key "+:^<name>$" (the
// module's full name, regex-escaped) with {"group_size": g}; the loader resolves a module as
// those loaders do: the first matching pattern ("-:" excludes the module), else the base.
#pragma once

#include <map>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace qshard {

// The "dynamic" object for `overrides` (full module name, e.g. "model.layers.0.mlp.down_proj",
// → its group size).
nlohmann::json DynamicGroupSizeEntries(const std::map<std::string, int>& overrides);

class ModuleGroupSizes {
 public:
  // Reads "group_size" and "dynamic" of a quantization_config; the error names the field.
  // Without "group_size" nothing is known and Of() returns nullopt for every module.
  static absl::StatusOr<ModuleGroupSizes> FromConfig(const nlohmann::json& quantization_config);

  // The group size of `module` (-1: per channel), or nullopt when the config excludes the
  // module from quantization or does not say.
  std::optional<int> Of(const std::string& module) const;

 private:
  struct Rule {
    std::regex pattern;
    bool exclude = false;
    std::optional<int> group_size;  // unset: the base
  };
  std::optional<int> base_;
  std::vector<Rule> rules_;  // in the JSON object's key order (nlohmann sorts keys)
};

}  // namespace qshard
