// The "decoder" section of a tokenizer.json: how token strings become text again.
// Supported: Sequence, Replace (String pattern), ByteFallback, Fuse, Strip, ByteLevel,
// Metaspace, BPEDecoder; with no decoder, tokens are joined with spaces (as Hugging Face does).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace qshard {

class Decoder {
 public:
  // No decoder section.
  Decoder() = default;

  static absl::StatusOr<Decoder> FromJson(const nlohmann::json& spec, std::string_view field);
  static Decoder ByteLevel();

  std::string Decode(std::vector<std::string> tokens) const;

 private:
  struct Step {
    enum class Kind { kReplace, kByteFallback, kFuse, kStrip, kByteLevel, kMetaspace, kBpe } kind;
    std::string pattern;  // kReplace
    std::string content;  // kReplace: replacement; kStrip/kMetaspace: the character; kBpe: suffix
    int strip_start = 0, strip_stop = 0;
    bool metaspace_prepends = true;  // prepend_scheme != never: drop it from the first token
  };
  static absl::Status AppendSteps(const nlohmann::json& spec, std::string_view field,
                                  std::vector<Step>& steps);
  static std::vector<std::string> Apply(const Step& step, std::vector<std::string> tokens);

  bool present_ = false;
  std::vector<Step> steps_;
};

}  // namespace qshard
