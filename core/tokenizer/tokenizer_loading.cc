// Building a Tokenizer from tokenizer.json, from vocab.json + merges.txt, or from a model
// directory holding either (plus its special-token config files).
#include <filesystem>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status.h"
#include "core/tokenizer/json_fields.h"
#include "core/tokenizer/special_token_config.h"
#include "core/tokenizer/tokenizer.h"

namespace qshard {
namespace {

using json_fields::Json;

// A missing section and a null one both mean "none".
const Json& Section(const Json& root, std::string_view key) {
  static const Json kNull;
  const Json* value = json_fields::Find(root, key);
  return value == nullptr ? kNull : *value;
}

absl::StatusOr<std::vector<AddedToken>> ParseAddedTokens(const Json& root, const BpeModel& model) {
  std::vector<AddedToken> tokens;
  if (json_fields::IsUnset(root, "added_tokens")) return tokens;
  QSHARD_ASSIGN_OR_RETURN(const Json* list, json_fields::GetArray(root, "added_tokens", ""));
  for (size_t i = 0; i < list->size(); ++i) {
    const Json& spec = (*list)[i];
    const std::string path = json_fields::IndexPath("added_tokens", i);
    AddedToken token;
    QSHARD_ASSIGN_OR_RETURN(const int64_t id, json_fields::GetInt(spec, "id", path));
    if (id < 0 || id > INT32_MAX) {
      return absl::InvalidArgumentError(absl::StrCat("field '", path, ".id': out of range"));
    }
    QSHARD_ASSIGN_OR_RETURN(token.content, json_fields::GetString(spec, "content", path));
    QSHARD_ASSIGN_OR_RETURN(token.single_word,
                            json_fields::GetBool(spec, "single_word", path, false));
    QSHARD_ASSIGN_OR_RETURN(token.lstrip, json_fields::GetBool(spec, "lstrip", path, false));
    QSHARD_ASSIGN_OR_RETURN(token.rstrip, json_fields::GetBool(spec, "rstrip", path, false));
    QSHARD_ASSIGN_OR_RETURN(token.normalized, json_fields::GetBool(spec, "normalized", path, true));
    QSHARD_ASSIGN_OR_RETURN(token.special, json_fields::GetBool(spec, "special", path, false));
    // Hugging Face gives a token the model already has the model's id.
    token.id = model.TokenToId(token.content).value_or(static_cast<int32_t>(id));
    tokens.push_back(std::move(token));
  }
  return tokens;
}

// merges.txt: one "left right" pair per line, "#version" lines skipped.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ReadMergesFile(
    const std::string& path, Env* env) {
  QSHARD_ASSIGN_OR_RETURN(const std::string text, env->ReadFileToString(path));
  std::vector<std::pair<std::string, std::string>> merges;
  int line_number = 0;
  for (size_t begin = 0; begin < text.size();) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + begin, end - begin);
    begin = end + 1;
    ++line_number;
    if (line.ends_with('\r')) line.remove_suffix(1);
    if (line.empty() || line.starts_with("#version")) continue;
    const size_t space = line.find(' ');
    if (space == std::string_view::npos || line.find(' ', space + 1) != std::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": line ", line_number, ": expected \"left right\" with one space"));
    }
    merges.emplace_back(line.substr(0, space), line.substr(space + 1));
  }
  return merges;
}

}  // namespace

absl::StatusOr<Tokenizer> Tokenizer::FromJsonRoot(const Json& root) {
  if (!root.is_object()) return absl::InvalidArgumentError("expected a JSON object");
  Tokenizer tokenizer;
  QSHARD_ASSIGN_OR_RETURN(const Json* model, json_fields::GetObject(root, "model", ""));
  QSHARD_ASSIGN_OR_RETURN(tokenizer.model_, BpeModel::FromJson(*model, "model"));
  QSHARD_ASSIGN_OR_RETURN(tokenizer.normalizer_,
                          Normalizer::FromJson(Section(root, "normalizer"), "normalizer"));
  QSHARD_ASSIGN_OR_RETURN(tokenizer.pre_tokenizer_,
                          PreTokenizer::FromJson(Section(root, "pre_tokenizer"), "pre_tokenizer"));
  QSHARD_ASSIGN_OR_RETURN(tokenizer.decoder_,
                          Decoder::FromJson(Section(root, "decoder"), "decoder"));
  QSHARD_ASSIGN_OR_RETURN(std::vector<AddedToken> added, ParseAddedTokens(root, tokenizer.model_));
  tokenizer.added_ = AddedVocabulary(std::move(added), tokenizer.normalizer_);
  return tokenizer;
}

absl::StatusOr<Tokenizer> Tokenizer::FromJsonText(std::string_view json_text,
                                                  std::string_view source) {
  QSHARD_ASSIGN_OR_RETURN(const Json root, json_fields::Parse(json_text, source));
  absl::StatusOr<Tokenizer> tokenizer = FromJsonRoot(root);
  if (!tokenizer.ok()) return WithContext(tokenizer.status(), source);
  return tokenizer;
}

absl::StatusOr<Tokenizer> Tokenizer::FromFile(const std::string& path, Env* env) {
  QSHARD_ASSIGN_OR_RETURN(const std::string text, env->ReadFileToString(path));
  return FromJsonText(text, path);
}

absl::StatusOr<Tokenizer> Tokenizer::FromVocabMerges(
    const std::string& vocab_path, const std::string& merges_path,
    const std::vector<std::string>& special_tokens, Env* env) {
  QSHARD_ASSIGN_OR_RETURN(const Json vocab, json_fields::ReadFile(vocab_path, env));
  QSHARD_ASSIGN_OR_RETURN(const auto merges, ReadMergesFile(merges_path, env));
  Tokenizer tokenizer;
  absl::StatusOr<BpeModel> model = BpeModel::Build(vocab, "", merges, "merges", BpeOptions{});
  if (!model.ok()) {
    return WithContext(model.status(), absl::StrCat(vocab_path, " + ", merges_path));
  }
  tokenizer.model_ = *std::move(model);
  tokenizer.pre_tokenizer_ = PreTokenizer::ByteLevel(/*add_prefix_space=*/false);
  tokenizer.decoder_ = Decoder::ByteLevel();
  std::vector<AddedToken> added;
  for (const std::string& content : special_tokens) {
    const auto id = tokenizer.model_.TokenToId(content);
    if (!id.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat(vocab_path, ": special token \"", content, "\" is not in the vocabulary"));
    }
    added.push_back({.id = *id, .content = content, .normalized = false, .special = true});
  }
  tokenizer.added_ = AddedVocabulary(std::move(added), tokenizer.normalizer_);
  return tokenizer;
}

absl::Status Tokenizer::ApplyModelDirConfig(const std::string& dir, bool add_special_tokens, Env* env) {
  QSHARD_ASSIGN_OR_RETURN(const SpecialTokenConfig config, ReadSpecialTokenConfig(dir, env));
  if (add_special_tokens) {
    std::vector<AddedToken> added = config.added_tokens_decoder;
    for (const std::string& content : config.special_tokens) {
      // Names the vocabulary lacks (and added_tokens_decoder does not define) are ignored.
      if (const auto id = model_.TokenToId(content)) {
        added.push_back({.id = *id, .content = content, .normalized = false, .special = true});
      }
    }
    added_ = AddedVocabulary(std::move(added), normalizer_);
  }
  const auto resolve = [&](const std::optional<std::string>& token, const std::string& source,
                           std::string_view field, std::optional<int64_t> config_id,
                           int32_t& out) -> absl::Status {
    if (token.has_value()) {
      const auto id = TokenToId(*token);
      if (!id.has_value()) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s: field '%s': token \"%s\" is not in the vocabulary", source, field, *token));
      }
      out = *id;
    } else if (config_id.has_value()) {
      out = static_cast<int32_t>(*config_id);
    }
    return absl::OkStatus();
  };
  QSHARD_RETURN_IF_ERROR(
      resolve(config.bos_token, config.bos_source, "bos_token", config.bos_token_id, bos_id_));
  return resolve(config.eos_token, config.eos_source, "eos_token", config.eos_token_id, eos_id_);
}

absl::StatusOr<Tokenizer> Tokenizer::FromModelDir(const std::string& dir, Env* env) {
  const std::filesystem::path root(dir);
  // Only regular files count: a directory named tokenizer.json is not a tokenizer.
  const auto is_file = [&](const char* name) { return IsRegularFile(env, (root / name).string()); };
  absl::StatusOr<Tokenizer> tokenizer;
  const bool has_json = is_file("tokenizer.json");
  if (has_json) {
    tokenizer = FromFile((root / "tokenizer.json").string(), env);
  } else if (is_file("vocab.json") && is_file("merges.txt")) {
    tokenizer = FromVocabMerges((root / "vocab.json").string(), (root / "merges.txt").string(), {}, env);
  } else {
    return absl::NotFoundError(
        absl::StrCat(dir, ": no tokenizer.json, nor vocab.json + merges.txt"));
  }
  if (!tokenizer.ok()) return tokenizer.status();
  QSHARD_RETURN_IF_ERROR(tokenizer->ApplyModelDirConfig(dir, /*add_special_tokens=*/!has_json, env));
  return tokenizer;
}

}  // namespace qshard
