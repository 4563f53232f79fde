// Hugging Face-exact BPE tokenizers, driven by the sections of a tokenizer.json (normalizer,
// pre_tokenizer, model, decoder, added_tokens) or by a GPT-2 style vocab.json + merges.txt pair.
// Encode adds no special tokens (no BOS/EOS; the post_processor is not applied). A loaded
// Tokenizer is immutable: Encode and Decode may run on several threads at once.
//
//   QSHARD_ASSIGN_OR_RETURN(Tokenizer tok, Tokenizer::FromModelDir(dir));
//   QSHARD_ASSIGN_OR_RETURN(std::vector<int32_t> ids, tok.Encode(text));
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "core/env.h"
#include "core/tokenizer/added_tokens.h"
#include "core/tokenizer/bpe_model.h"
#include "core/tokenizer/decoder.h"
#include "core/tokenizer/normalizer.h"
#include "core/tokenizer/pre_tokenizer.h"

namespace qshard {

class Tokenizer {
 public:
  // `dir`/tokenizer.json if present, else `dir`/vocab.json + merges.txt (byte-level BPE with
  // GPT-2's pre-tokenizer). BOS/EOS come from tokenizer_config.json, special_tokens_map.json
  // or config.json (first found); special tokens named there are split out of the text when
  // the vocab.json + merges.txt pair is used.
  static absl::StatusOr<Tokenizer> FromModelDir(const std::string& dir, Env* env = Env::Default());
  // A tokenizer.json file (no BOS/EOS: those live in the other config files).
  static absl::StatusOr<Tokenizer> FromFile(const std::string& path, Env* env = Env::Default());
  // tokenizer.json contents; `source` names them in errors.
  static absl::StatusOr<Tokenizer> FromJsonText(std::string_view json_text,
                                                std::string_view source);
  // GPT-2 byte-level BPE from a vocabulary ({"token": id}) and a merges file ("a b" lines);
  // `special_tokens` (which must be in the vocabulary) are split out of the text first.
  static absl::StatusOr<Tokenizer> FromVocabMerges(
      const std::string& vocab_path, const std::string& merges_path,
      const std::vector<std::string>& special_tokens = {}, Env* env = Env::Default());

  // Token ids of `text`, without special tokens added. Invalid UTF-8 is first converted with
  // U+FFFD replacements (as Hugging Face's Node binding does; its Rust API only takes valid
  // text). Fails only if the file names an unk_token missing from its vocabulary and the text
  // needs it.
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text) const;

  // Text of `ids` through the decoder section, as Hugging Face's decode(ids, skip_special_tokens):
  // unknown ids are skipped; with `skip_special_tokens`, so are special tokens whose text
  // (see IdToToken) is their content, which excludes normalized ones that normalizing changes.
  std::string Decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

  // -1 where the model directory does not say.
  int32_t bos_id() const { return bos_id_; }
  int32_t eos_id() const { return eos_id_; }
  // One past the largest token id (model vocabulary and added tokens).
  int32_t vocab_size() const;
  // A short description, e.g. "bpe (no pre-tokenizer, fuse_unk)" or "byte-level bpe".
  std::string kind() const;

  // As Hugging Face 0.23: an added token with normalized: true reads in its normalized form
  // (TinyStories-656K: IdToToken(0) == "▁<unk>", TokenToId("<unk>") == 0).
  std::optional<std::string> IdToToken(int32_t id) const;
  std::optional<int32_t> TokenToId(std::string_view token) const;

 private:
  Tokenizer() = default;
  static absl::StatusOr<Tokenizer> FromJsonRoot(const nlohmann::json& root);
  // Sets the model directory's BOS/EOS and, for vocab.json + merges.txt, its special tokens.
  absl::Status ApplyModelDirConfig(const std::string& dir, bool add_special_tokens, Env* env);
  absl::Status TokenizePiece(TextPiece piece, std::vector<std::string>& words,
                             std::vector<int32_t>& ids) const;

  Normalizer normalizer_;
  PreTokenizer pre_tokenizer_;
  BpeModel model_;
  Decoder decoder_;
  AddedVocabulary added_;
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
};

}  // namespace qshard
