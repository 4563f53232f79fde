// The "normalizer" section of a tokenizer.json: text rewrites applied before pre-tokenizing
// (and to normalized added tokens' own text). Supported: Sequence, Prepend, Replace with a
// String pattern, Strip; other types (NFC, NFKC, Lowercase, Regex patterns...) are load errors.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace qshard {

class Normalizer {
 public:
  // The identity (a null "normalizer" section).
  Normalizer() = default;

  // `field` is the spec's path in the file, for error messages ("normalizer").
  static absl::StatusOr<Normalizer> FromJson(const nlohmann::json& spec, std::string_view field);

  std::string Normalize(std::string_view text) const;
  bool is_identity() const { return steps_.empty(); }

 private:
  struct Step {
    enum class Kind { kPrepend, kReplace, kStrip } kind;
    std::string pattern;  // kReplace: the text to find
    std::string content;  // kPrepend: the prefix; kReplace: the replacement
    bool strip_left = false, strip_right = false;
  };
  static absl::Status AppendSteps(const nlohmann::json& spec, std::string_view field,
                                  std::vector<Step>& steps);
  static std::string Apply(const Step& step, std::string text);

  std::vector<Step> steps_;
};

// Reads a Replace-style {"String": "..."} pattern; Regex patterns are rejected by name.
absl::StatusOr<std::string> StringPattern(const nlohmann::json& owner, std::string_view field);

}  // namespace qshard
