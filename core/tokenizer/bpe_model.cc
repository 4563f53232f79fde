#include "core/tokenizer/bpe_model.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status.h"
#include "core/tokenizer/json_fields.h"
#include "core/tokenizer/utf8.h"

namespace qshard {
namespace {

using json_fields::FieldPath;
using json_fields::IndexPath;
using json_fields::Json;

// Ids index dense tables; this bounds what a hostile file can make us allocate.
constexpr int64_t kMaxTokenId = int64_t{1} << 26;

absl::Status FieldError(std::string_view path, std::string_view problem) {
  return absl::InvalidArgumentError(absl::StrFormat("field '%s': %s", path, problem));
}

}  // namespace

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseMerges(
    const Json& merges, std::string_view field) {
  if (!merges.is_array()) return FieldError(field, "expected an array");
  std::vector<std::pair<std::string, std::string>> pairs;
  pairs.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const Json& merge = merges[i];
    if (merge.is_string()) {
      const std::string& line = merge.get_ref<const std::string&>();
      const size_t space = line.find(' ');
      if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
        return FieldError(
            IndexPath(field, i),
            absl::StrCat("expected \"left right\" with one space, got \"", line, "\""));
      }
      pairs.emplace_back(line.substr(0, space), line.substr(space + 1));
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() &&
               merge[1].is_string()) {
      pairs.emplace_back(merge[0].get<std::string>(), merge[1].get<std::string>());
    } else {
      return FieldError(IndexPath(field, i),
                        "expected a \"left right\" string or a pair of strings");
    }
  }
  return pairs;
}

absl::StatusOr<BpeModel> BpeModel::FromJson(const Json& spec, std::string_view field) {
  if (!spec.is_object()) return FieldError(field, "expected an object");
  QSHARD_ASSIGN_OR_RETURN(const std::optional<std::string> type,
                          json_fields::GetOptionalString(spec, "type", field));
  if (type.has_value() && *type != "BPE") {
    return absl::UnimplementedError(absl::StrCat("field '", FieldPath(field, "type"),
                                                 "': unsupported model '", *type,
                                                 "' (only BPE is implemented)"));
  }
  if (const Json* dropout = json_fields::Find(spec, "dropout");
      dropout != nullptr && !dropout->is_null() &&
      !(dropout->is_number() && dropout->get<double>() == 0)) {
    return absl::UnimplementedError(absl::StrCat("field '", FieldPath(field, "dropout"),
                                                 "': BPE dropout is random and not supported"));
  }
  BpeOptions options;
  QSHARD_ASSIGN_OR_RETURN(options.unk_token,
                          json_fields::GetOptionalString(spec, "unk_token", field));
  QSHARD_ASSIGN_OR_RETURN(const std::optional<std::string> prefix,
                          json_fields::GetOptionalString(spec, "continuing_subword_prefix", field));
  QSHARD_ASSIGN_OR_RETURN(const std::optional<std::string> suffix,
                          json_fields::GetOptionalString(spec, "end_of_word_suffix", field));
  options.continuing_subword_prefix = prefix.value_or("");
  options.end_of_word_suffix = suffix.value_or("");
  QSHARD_ASSIGN_OR_RETURN(options.fuse_unk, json_fields::GetBool(spec, "fuse_unk", field, false));
  QSHARD_ASSIGN_OR_RETURN(options.byte_fallback,
                          json_fields::GetBool(spec, "byte_fallback", field, false));
  QSHARD_ASSIGN_OR_RETURN(options.ignore_merges,
                          json_fields::GetBool(spec, "ignore_merges", field, false));

  QSHARD_ASSIGN_OR_RETURN(const Json* vocab, json_fields::GetObject(spec, "vocab", field));
  QSHARD_ASSIGN_OR_RETURN(const Json* merges_json, json_fields::GetArray(spec, "merges", field));
  QSHARD_ASSIGN_OR_RETURN(auto merges, ParseMerges(*merges_json, FieldPath(field, "merges")));
  return Build(*vocab, FieldPath(field, "vocab"), merges, FieldPath(field, "merges"),
               std::move(options));
}

absl::StatusOr<BpeModel> BpeModel::Build(
    const Json& vocab, std::string_view vocab_field,
    const std::vector<std::pair<std::string, std::string>>& merges, std::string_view merges_field,
    BpeOptions options) {
  if (!vocab.is_object()) return FieldError(vocab_field, "expected an object {token: id}");
  BpeModel model;
  model.options_ = std::move(options);
  model.token_to_id_.reserve(vocab.size());
  for (const auto& [token, id_json] : vocab.items()) {
    if (!id_json.is_number_integer() || id_json.get<int64_t>() < 0 ||
        id_json.get<int64_t>() >= kMaxTokenId) {
      return FieldError(absl::StrFormat("%s[\"%s\"]", vocab_field, token),
                        absl::StrCat("expected a token id in [0, ", kMaxTokenId, ")"));
    }
    const auto id = static_cast<int32_t>(id_json.get<int64_t>());
    model.token_to_id_[token] = id;
    if (id >= static_cast<int32_t>(model.id_to_token_.size())) {
      model.id_to_token_.resize(id + 1);
      model.id_present_.resize(id + 1, false);
    }
    model.id_to_token_[id] = token;
    model.id_present_[id] = true;
  }

  const std::string& prefix = model.options_.continuing_subword_prefix;
  model.merges_.rules.reserve(merges.size());
  model.merges_.rank_limit = static_cast<uint32_t>(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    const auto left_id = model.TokenToId(left);
    const auto right_id = model.TokenToId(right);
    // The right part carries the continuing-subword prefix, which the merged token drops.
    const std::string merged =
        left + (right.starts_with(prefix) ? right.substr(prefix.size()) : right);
    const auto merged_id = model.TokenToId(merged);
    for (const auto& [token, id] :
         {std::pair{&left, left_id}, std::pair{&right, right_id}, std::pair{&merged, merged_id}}) {
      if (!id.has_value()) {
        return FieldError(IndexPath(merges_field, rank),
                          absl::StrCat("token \"", *token, "\" is not in the vocabulary"));
      }
    }
    // A repeated pair keeps its last rank, as Hugging Face's map does.
    model.merges_.rules[PairKey(*left_id, *right_id)] = {static_cast<uint32_t>(rank), *merged_id};
  }

  for (int b = 0; b < 256; ++b) {
    model.byte_ids_[b] = model.TokenToId(absl::StrFormat("<0x%02X>", b)).value_or(-1);
    if (model.byte_ids_[b] >= 0) model.byte_fallback_active_ = model.options_.byte_fallback;
  }
  return model;
}

std::optional<int32_t> BpeModel::TokenToId(std::string_view token) const {
  const auto it = token_to_id_.find(token);
  if (it == token_to_id_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToToken(int32_t id) const {
  if (id < 0 || id >= id_limit() || !id_present_[id]) return nullptr;
  return &id_to_token_[id];
}

absl::StatusOr<int32_t> BpeModel::UnknownId() const {
  const auto id = TokenToId(*options_.unk_token);
  if (!id.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat("unk_token \"", *options_.unk_token, "\" is not in the vocabulary"));
  }
  return *id;
}

absl::Status BpeModel::Tokenize(std::string_view word, std::vector<int32_t>& ids) const {
  if (word.empty()) return absl::OkStatus();
  if (options_.ignore_merges) {
    if (const auto id = TokenToId(word)) {
      ids.push_back(*id);
      return absl::OkStatus();
    }
  }
  const bool decorated =
      !options_.continuing_subword_prefix.empty() || !options_.end_of_word_suffix.empty();
  std::vector<int32_t> symbols;
  symbols.reserve(word.size());
  std::string decorated_char;
  bool unknown_pending = false;  // a run of unknown characters not yet emitted
  int32_t unknown_id = -1;
  for (size_t pos = 0; pos < word.size();) {
    const size_t begin = pos;
    pos += utf8::SequenceLength(static_cast<unsigned char>(word[begin]));
    std::string_view piece = word.substr(begin, pos - begin);
    if (decorated) {
      decorated_char.clear();
      if (begin > 0) decorated_char += options_.continuing_subword_prefix;
      decorated_char += piece;
      if (pos >= word.size()) decorated_char += options_.end_of_word_suffix;
      piece = decorated_char;
    }
    if (const auto it = token_to_id_.find(piece); it != token_to_id_.end()) {
      if (unknown_pending) symbols.push_back(unknown_id);
      unknown_pending = false;
      symbols.push_back(it->second);
      continue;
    }
    // Byte fallback applies per character, to characters all of whose bytes have a token.
    // Like Hugging Face, it leaves a pending unknown run pending (emitted after these bytes).
    if (options_.byte_fallback) {
      bool all_bytes = true;
      for (unsigned char b : piece) all_bytes = all_bytes && byte_ids_[b] >= 0;
      if (all_bytes) {
        for (unsigned char b : piece) symbols.push_back(byte_ids_[b]);
        continue;
      }
    }
    if (!options_.unk_token.has_value()) continue;  // Hugging Face drops the character
    if (unknown_id < 0) {
      QSHARD_ASSIGN_OR_RETURN(unknown_id, UnknownId());
    }
    if (unknown_pending && !options_.fuse_unk) symbols.push_back(unknown_id);
    unknown_pending = true;
  }
  if (unknown_pending) symbols.push_back(unknown_id);

  MergeSymbols(merges_, symbols);
  ids.insert(ids.end(), symbols.begin(), symbols.end());
  return absl::OkStatus();
}

}  // namespace qshard
