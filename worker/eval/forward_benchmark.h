// Forward-pass throughput of a resident model: token ids to logits for windows of seqlen
// tokens, batch_windows per call, best of several repeats after a warm-up call. The same
// measurement as bench/forward_reference.py makes for the plain-PyTorch reference, so the two
// can be compared on one machine at one thread count (for `qshard bench`).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/resident_model.h"

namespace qshard {

struct ForwardBenchmarkOptions {
  int64_t seqlen = 512;
  int64_t windows = 40;  // taken from the start of the token stream
  int64_t batch_windows = 4;
  int repeats = 3;
};

struct ForwardBenchmarkResult {
  int64_t tokens = 0;   // per repeat: windows × seqlen
  double seconds = 0.0;  // best repeat
  double tokens_per_second = 0.0;
};

absl::StatusOr<ForwardBenchmarkResult> BenchmarkForward(const ResidentModel& model, const std::vector<int32_t>& tokens,
                                                        const ForwardBenchmarkOptions& options);

}  // namespace qshard
