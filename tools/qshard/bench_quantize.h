// `qshard bench quantize`: whole quantization jobs timed against the method authors' code in
// the same run and on the same calibration token ids, with both results' KL(base ‖ quantized)
// and top-1 agreement on held-out windows (what `qshard eval --base` measures). Jobs:
//   tinystories:       TinyStories-656K, GPTQ W4 g32, 128 windows of 512;
//   opt-layer:         one OPT-1.3B-shaped layer (make-synthetic, seeded), GPTQ W4 g128, 16 of 1024;
//   tinystories-aespa: TinyStories-656K, aespa W3 per channel (AdaRound 2000 iterations), 128 of 512.
// The GPTQ jobs' reference is IST-DASLab/gptq (imported at run time from --gptq-src by
// bench/gptq_reference.py), aespa's is SamsungLabs/aespa (from --aespa-src, by
// bench/aespa_reference.py). Each job's FLOP estimate, and the time it would take at the sgemm
// rate measured in the same run, come beside the seconds (issue 17's "FLOP limit").
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "tools/qshard/bench_support.h"

namespace qshard::cli {

struct QuantizeBenchOptions {
  BenchCommon common;
  std::string gptq_src;   // folder with the authors' gptq.py and quant.py; empty: no GPTQ reference rows
  std::string aespa_src;  // a checkout of SamsungLabs/aespa; empty: no aespa reference row
  std::vector<std::string> jobs = {"tinystories", "opt-layer", "tinystories-aespa"};
  std::string tinystories = "../shared/data/tinystories-656k";
  std::string text = "../shared/data/wikitext-2-raw/wiki.test.raw";  // calibration and evaluation
  std::string shared_data = "../shared/data";  // the synthetic model's tokenizer files
  uint64_t seed = 0;  // calibration windows
};

// Two rows per job (qshard, then the authors' code), jobs in the order given.
absl::StatusOr<std::vector<nlohmann::json>> RunQuantizeBench(const QuantizeBenchOptions& options);

std::vector<BenchColumn> QuantizeBenchColumns();

}  // namespace qshard::cli
