#include "core/tokenizer/added_tokens.h"

#include <algorithm>

#include "core/tokenizer/unicode_classes.h"
#include "core/tokenizer/utf8.h"

namespace qshard {
namespace {

// Regex \w, approximated by letters, numbers and '_' (combining marks are not counted).
bool IsWordChar(char32_t cp) { return cp == '_' || unicode::IsLetter(cp) || unicode::IsNumber(cp); }

bool EndsWithWord(std::string_view text) {
  if (text.empty()) return false;
  size_t pos = utf8::PreviousStart(text, text.size());
  return IsWordChar(utf8::Next(text, pos));
}

bool StartsWithWord(std::string_view text) {
  if (text.empty()) return false;
  size_t pos = 0;
  return IsWordChar(utf8::Next(text, pos));
}

}  // namespace

void AddedVocabulary::Trie::Insert(std::string_view pattern, int token_index) {
  int node = 0;
  for (unsigned char byte : pattern) {
    auto it = nodes_[node].children.find(byte);
    if (it == nodes_[node].children.end()) {
      nodes_.emplace_back();
      it = nodes_[node].children.emplace(byte, static_cast<int>(nodes_.size()) - 1).first;
    }
    node = it->second;
  }
  // The first token with a given pattern keeps it.
  if (nodes_[node].token_index < 0) nodes_[node].token_index = token_index;
}

std::pair<size_t, int> AddedVocabulary::Trie::LongestAt(std::string_view text, size_t pos) const {
  std::pair<size_t, int> best{0, -1};
  int node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    const auto it = nodes_[node].children.find(static_cast<unsigned char>(text[i]));
    if (it == nodes_[node].children.end()) break;
    node = it->second;
    if (nodes_[node].token_index >= 0) best = {i + 1 - pos, nodes_[node].token_index};
  }
  return best;
}

AddedVocabulary::AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer& normalizer) {
  for (AddedToken& token : tokens) {
    if (token.content.empty() || index_by_content_.contains(token.content)) continue;
    index_by_content_[token.content] = static_cast<int>(tokens_.size());
    index_by_id_.try_emplace(token.id, static_cast<int>(tokens_.size()));
    tokens_.push_back(std::move(token));
  }
  for (const AddedToken& token : tokens_) {
    texts_.push_back(token.normalized ? normalizer.Normalize(token.content) : token.content);
  }
  // Hugging Face matches special tokens ahead of the others when patterns coincide.
  for (const bool special : {true, false}) {
    for (size_t i = 0; i < tokens_.size(); ++i) {
      const AddedToken& token = tokens_[i];
      if (token.special != special) continue;
      (token.normalized ? normalized_trie_ : raw_trie_).Insert(texts_[i], static_cast<int>(i));
    }
  }
}

std::vector<AddedTokenSplit> AddedVocabulary::SplitRaw(std::string_view text) const {
  return Split(text, raw_trie_);
}

std::vector<AddedTokenSplit> AddedVocabulary::SplitNormalized(std::string_view text) const {
  return Split(text, normalized_trie_);
}

std::vector<AddedTokenSplit> AddedVocabulary::Split(std::string_view text, const Trie& trie) const {
  std::vector<AddedTokenSplit> splits;
  if (text.empty()) return splits;
  if (trie.empty()) {
    splits.push_back({0, text.size(), -1});
    return splits;
  }
  size_t covered = 0;  // end of the last emitted split
  for (size_t pos = 0; pos < text.size();) {
    const auto [length, index] = trie.LongestAt(text, pos);
    if (length == 0) {
      ++pos;
      continue;
    }
    size_t start = pos, stop = pos + length;
    pos = stop;  // matches never overlap, even those discarded below
    const AddedToken& token = tokens_[index];
    if (token.single_word &&
        (EndsWithWord(text.substr(0, start)) || StartsWithWord(text.substr(stop)))) {
      continue;
    }
    if (token.lstrip) start = unicode::TrailingWhitespaceStart(text.substr(0, start));
    if (token.rstrip) stop += unicode::LeadingWhitespaceLength(text.substr(stop));
    if (stop <= covered) continue;  // inside the spaces the previous token stripped
    start = std::max(start, covered);
    if (covered < start) splits.push_back({covered, start, -1});
    splits.push_back({start, stop, token.id});
    covered = stop;
  }
  if (covered < text.size()) splits.push_back({covered, text.size(), -1});
  return splits;
}

std::optional<int32_t> AddedVocabulary::TokenToId(std::string_view content) const {
  const auto it = index_by_content_.find(content);
  if (it == index_by_content_.end()) return std::nullopt;
  return tokens_[it->second].id;
}

const std::string* AddedVocabulary::TextForId(int32_t id) const {
  const auto it = index_by_id_.find(id);
  return it == index_by_id_.end() ? nullptr : &texts_[it->second];
}

bool AddedVocabulary::IsSpecial(std::string_view content) const {
  const auto it = index_by_content_.find(content);
  return it != index_by_content_.end() && tokens_[it->second].special;
}

}  // namespace qshard
