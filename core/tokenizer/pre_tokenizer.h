// The "pre_tokenizer" section of a tokenizer.json: how normalized text is cut into words that
// the model encodes independently. Supported: none (null), ByteLevel (GPT-2 split + byte
// mapping), Metaspace, Split with a String pattern (or exactly the GPT-2 regex),
// WhitespaceSplit, and Sequence of these; other types are load errors.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tokenizer/split.h"
#include "nlohmann/json.hpp"

namespace qshard {

// A piece of text on its way to the model. `at_input_start` is true only for the piece that
// begins the caller's text (Metaspace's prepend_scheme "first" needs it).
struct TextPiece {
  std::string text;
  bool at_input_start = false;
};

class PreTokenizer {
 public:
  // No pre-tokenizer: the whole piece is one word.
  PreTokenizer() = default;

  static absl::StatusOr<PreTokenizer> FromJson(const nlohmann::json& spec, std::string_view field);
  // GPT-2's: ByteLevel with its split regex.
  static PreTokenizer ByteLevel(bool add_prefix_space);

  // Appends the words of `piece` to `words`.
  void Split(TextPiece piece, std::vector<std::string>& words) const;

  // "no pre-tokenizer", "byte-level", "metaspace", "split", or a '+'-joined sequence.
  std::string Describe() const;
  bool has_byte_level() const;

 private:
  struct Step {
    enum class Kind { kByteLevel, kMetaspace, kSplit, kWhitespaceSplit } kind;
    // kByteLevel
    bool add_prefix_space = false;
    bool use_regex = true;
    // kMetaspace
    std::string replacement;
    enum class Prepend { kAlways, kFirst, kNever } prepend = Prepend::kAlways;
    bool split = true;
    // kSplit
    std::string pattern;
    bool gpt2_regex = false;
    SplitBehavior behavior = SplitBehavior::kIsolated;
    bool invert = false;
  };
  static absl::Status AppendSteps(const nlohmann::json& spec, std::string_view field,
                                  std::vector<Step>& steps);
  static void Apply(const Step& step, TextPiece piece, std::vector<TextPiece>& out);

  std::vector<Step> steps_;
};

}  // namespace qshard
