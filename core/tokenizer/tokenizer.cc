// Encoding and decoding; loading lives in tokenizer_loading.cc.
#include "core/tokenizer/tokenizer.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "core/tokenizer/utf8.h"

namespace qshard {

absl::Status Tokenizer::TokenizePiece(TextPiece piece, std::vector<std::string>& words,
                                      std::vector<int32_t>& ids) const {
  words.clear();
  pre_tokenizer_.Split(std::move(piece), words);
  for (const std::string& word : words) QSHARD_RETURN_IF_ERROR(model_.Tokenize(word, ids));
  return absl::OkStatus();
}

// Hugging Face's order: added tokens matched in the raw text, then each remaining piece
// normalized on its own and searched for the normalized added tokens, then pre-tokenized
// and encoded word by word.
absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view input) const {
  std::string converted;
  if (!utf8::IsValid(input)) {
    converted = utf8::ToValidUtf8(input);
    input = converted;
  }
  std::vector<int32_t> ids;
  std::vector<std::string> words;
  for (const AddedTokenSplit& raw : added_.SplitRaw(input)) {
    if (raw.id >= 0) {
      ids.push_back(raw.id);
      continue;
    }
    const std::string normalized =
        normalizer_.Normalize(input.substr(raw.begin, raw.end - raw.begin));
    for (const AddedTokenSplit& split : added_.SplitNormalized(normalized)) {
      if (split.id >= 0) {
        ids.push_back(split.id);
        continue;
      }
      TextPiece piece{normalized.substr(split.begin, split.end - split.begin),
                      raw.begin == 0 && split.begin == 0};
      QSHARD_RETURN_IF_ERROR(TokenizePiece(std::move(piece), words, ids));
    }
  }
  return ids;
}

std::string Tokenizer::Decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    const std::string* added = added_.TextForId(id);
    const std::string* token = added != nullptr ? added : model_.IdToToken(id);
    if (token == nullptr) continue;
    if (skip_special_tokens && added_.IsSpecial(*token)) continue;
    tokens.push_back(*token);
  }
  return decoder_.Decode(std::move(tokens));
}

int32_t Tokenizer::vocab_size() const {
  int32_t limit = model_.id_limit();
  for (const AddedToken& token : added_.tokens()) limit = std::max(limit, token.id + 1);
  return limit;
}

std::string Tokenizer::kind() const {
  if (pre_tokenizer_.has_byte_level()) return "byte-level bpe";
  std::string kind = absl::StrCat("bpe (", pre_tokenizer_.Describe());
  if (model_.options().fuse_unk) absl::StrAppend(&kind, ", fuse_unk");
  if (model_.byte_fallback_active()) absl::StrAppend(&kind, ", byte_fallback");
  return kind + ")";
}

std::optional<std::string> Tokenizer::IdToToken(int32_t id) const {
  if (const std::string* added = added_.TextForId(id)) return *added;
  if (const std::string* token = model_.IdToToken(id)) return *token;
  return std::nullopt;
}

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  if (const auto id = added_.TokenToId(token)) return id;
  return model_.TokenToId(token);
}

}  // namespace qshard
