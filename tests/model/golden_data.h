// Reads the golden data written by tests/reference/forward/make_golden.py: the manifest
// golden.json and the raw little-endian float32 / int32 files it names. Paths are relative to
// the repository root, where the tests run.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace qshard::testing {

inline constexpr char kGoldenManifest[] = "tests/reference/forward/golden.json";
inline constexpr char kTinyStoriesDir[] = "../shared/data/tinystories-656k";

template <typename T>
absl::StatusOr<std::vector<T>> ReadRawFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open (run from the repository root)"));
  const std::streamsize bytes = in.tellg();
  std::vector<T> values(bytes / sizeof(T));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(values.data()), bytes);
  return values;
}

inline absl::StatusOr<nlohmann::json> ReadGoldenManifest() {
  std::ifstream in(kGoldenManifest);
  if (!in) return absl::NotFoundError(absl::StrCat(kGoldenManifest, ": cannot open (run from the repository root)"));
  nlohmann::json manifest = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (manifest.is_discarded()) return absl::DataLossError(absl::StrCat(kGoldenManifest, ": invalid JSON"));
  return manifest;
}

struct GoldenCase {
  std::string name;
  std::string model_dir;
  int64_t batch = 0;
  int64_t seq = 0;
  std::vector<int32_t> tokens;
  std::vector<int64_t> rows;  // rows of the [batch*seq, vocab] logits that were kept
  std::vector<float> logits;  // [rows.size(), vocab]
};

inline absl::StatusOr<std::vector<GoldenCase>> ReadGoldenCases() {
  absl::StatusOr<nlohmann::json> manifest = ReadGoldenManifest();
  if (!manifest.ok()) return manifest.status();
  std::vector<GoldenCase> cases;
  for (const nlohmann::json& c : (*manifest)["cases"]) {
    GoldenCase g;
    g.name = c["name"];
    g.model_dir = c["model"];
    g.batch = c["batch"];
    g.seq = c["seq"];
    g.tokens = c["tokens"].get<std::vector<int32_t>>();
    g.rows = c["rows"].get<std::vector<int64_t>>();
    absl::StatusOr<std::vector<float>> logits = ReadRawFile<float>(c["logits"]);
    if (!logits.ok()) return logits.status();
    g.logits = std::move(*logits);
    cases.push_back(std::move(g));
  }
  return cases;
}

}  // namespace qshard::testing
