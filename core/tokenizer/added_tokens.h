// Added (special or user) tokens of a tokenizer: found in the text before the model runs,
// leftmost-longest, either in the raw text or, for `normalized` tokens, in the normalized
// text (matching the token's own normalized form, so with a Prepend normalizer a '▁' in
// front of "<unk>" is part of the match). lstrip/rstrip/single_word as in Hugging Face.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "core/tokenizer/normalizer.h"
#include "core/tokenizer/string_map.h"

namespace qshard {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
};

// A byte range of the text and the added token it is (-1: ordinary text).
struct AddedTokenSplit {
  size_t begin = 0;
  size_t end = 0;
  int32_t id = -1;
};

class AddedVocabulary {
 public:
  AddedVocabulary() = default;
  // `normalizer` gives the text normalized tokens are matched as.
  AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer& normalizer);

  // Splits raw text on the tokens with normalized == false.
  std::vector<AddedTokenSplit> SplitRaw(std::string_view text) const;
  // Splits normalized text on the tokens with normalized == true.
  std::vector<AddedTokenSplit> SplitNormalized(std::string_view text) const;

  std::optional<int32_t> TokenToId(std::string_view content) const;
  // The token's text as Hugging Face 0.23 gives it back (id_to_token, decode): normalized
  // tokens in their normalized form (TinyStories-656K's <unk> reads "▁<unk>").
  const std::string* TextForId(int32_t id) const;
  // Whether `content` is the text of a special added token (by text, as Hugging Face checks).
  bool IsSpecial(std::string_view content) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  // A byte trie over the patterns, for leftmost-longest matching.
  class Trie {
   public:
    void Insert(std::string_view pattern, int token_index);
    // Longest pattern starting at text[pos]: (length, token index), or length 0.
    std::pair<size_t, int> LongestAt(std::string_view text, size_t pos) const;
    bool empty() const { return nodes_.size() <= 1; }

   private:
    struct Node {
      absl::flat_hash_map<unsigned char, int> children;
      int token_index = -1;
    };
    std::vector<Node> nodes_{1};
  };

  std::vector<AddedTokenSplit> Split(std::string_view text, const Trie& trie) const;

  std::vector<AddedToken> tokens_;
  std::vector<std::string> texts_;  // TextForId's answer, per token
  StringMap<int> index_by_content_;
  absl::flat_hash_map<int32_t, int> index_by_id_;
  Trie raw_trie_;
  Trie normalized_trie_;
};

}  // namespace qshard
