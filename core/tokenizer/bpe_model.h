// The BPE model of a tokenizer: vocabulary, ranked merges, and the per-character rules for
// characters outside the vocabulary (byte fallback to <0xNN> tokens, else the unknown token,
// fused or not), with optional continuing-subword prefix / end-of-word suffix and
// ignore_merges, as in Hugging Face's "model": {"type": "BPE", ...} section.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/tokenizer/bpe_merge.h"
#include "core/tokenizer/string_map.h"
#include "nlohmann/json.hpp"

namespace qshard {

struct BpeOptions {
  std::optional<std::string> unk_token;
  std::string continuing_subword_prefix;
  std::string end_of_word_suffix;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
};

class BpeModel {
 public:
  // The "model" section of a tokenizer.json (`field` names it in errors).
  static absl::StatusOr<BpeModel> FromJson(const nlohmann::json& spec, std::string_view field);
  // A vocabulary object {"token": id} and ranked merges (left, right); the field names
  // locate them in error messages.
  static absl::StatusOr<BpeModel> Build(
      const nlohmann::json& vocab, std::string_view vocab_field,
      const std::vector<std::pair<std::string, std::string>>& merges, std::string_view merges_field,
      BpeOptions options);

  // Appends the ids of one word (a pre-tokenizer piece) to `ids`. Fails only when an unknown
  // character needs an unk_token that is not in the vocabulary, as Hugging Face does.
  absl::Status Tokenize(std::string_view word, std::vector<int32_t>& ids) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;
  const std::string* IdToToken(int32_t id) const;
  // One past the largest id.
  int32_t id_limit() const { return static_cast<int32_t>(id_to_token_.size()); }
  // byte_fallback is set and the vocabulary has <0xNN> tokens. Hugging Face decides per
  // character: one falls back to bytes only if all of its bytes have a token, else it is
  // unknown (TinyStories-656K sets byte_fallback but has no byte tokens at all).
  bool byte_fallback_active() const { return byte_fallback_active_; }
  const BpeOptions& options() const { return options_; }

 private:
  absl::StatusOr<int32_t> UnknownId() const;

  StringMap<int32_t> token_to_id_;
  std::vector<std::string> id_to_token_;  // empty strings for ids not in the vocabulary
  std::vector<bool> id_present_;
  MergeTable merges_;
  BpeOptions options_;
  std::array<int32_t, 256> byte_ids_{};  // the <0xNN> token of each byte, or -1
  bool byte_fallback_active_ = false;
};

// Splits merges given as "a b" strings (exactly one space) or [a, b] arrays.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseMerges(
    const nlohmann::json& merges, std::string_view field);

}  // namespace qshard
