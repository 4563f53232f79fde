// What a Hugging Face model directory says about special tokens outside tokenizer.json:
// tokenizer_config.json and special_tokens_map.json (token strings, added_tokens_decoder)
// and config.json (bos_token_id / eos_token_id). Missing files are fine; malformed ones are
// errors naming the file and field.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/env.h"
#include "core/tokenizer/added_tokens.h"

namespace qshard {

struct SpecialTokenConfig {
  // Token strings, tokenizer_config.json first, then special_tokens_map.json.
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
  // From config.json (the first id where it gives a list).
  std::optional<int64_t> bos_token_id;
  std::optional<int64_t> eos_token_id;
  // Every special token string named (bos, eos, unk, pad, sep, cls, mask, additional ones).
  std::vector<std::string> special_tokens;
  // tokenizer_config.json's added_tokens_decoder, with their ids and flags.
  std::vector<AddedToken> added_tokens_decoder;
  // Which file each of bos_token / eos_token came from, for error messages.
  std::string bos_source;
  std::string eos_source;
};

absl::StatusOr<SpecialTokenConfig> ReadSpecialTokenConfig(const std::string& dir, Env* env = Env::Default());

}  // namespace qshard
