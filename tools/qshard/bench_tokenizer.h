// `qshard bench tokenizer`: seconds to encode a text (read by the evaluation protocol) with the
// model's tokenizer and, in the same run when Node and the npm `tokenizers` package in
// tests/reference/tokenizer/node_modules are there, with Hugging Face tokenizers
// (bench/tokenizer_node.js), checking that both give the same ids.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "tools/qshard/bench_support.h"

namespace qshard::cli {

struct TokenizerBenchOptions {
  BenchCommon common;  // threads unused: both sides encode one text on one thread
  std::string model;
  std::string text;
  std::string node = "node";
};

absl::StatusOr<nlohmann::json> RunTokenizerBench(const TokenizerBenchOptions& options);

std::vector<BenchColumn> TokenizerBenchColumns();

}  // namespace qshard::cli
