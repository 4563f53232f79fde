#include "engine/calibration_windows.h"

#include "core/status.h"
#include "core/tokenizer/text_tokens.h"
#include "core/tokenizer/tokenizer.h"
#include "worker/calibration/window_sampler.h"

namespace qshard {

absl::StatusOr<std::vector<int32_t>> CalibrationWindows(const JobSpec& spec, int64_t seqlen) {
  const CalibrationSpec& c = spec.calibration;
  QSHARD_ASSIGN_OR_RETURN(Tokenizer tokenizer, Tokenizer::FromModelDir(spec.model_dir));
  QSHARD_ASSIGN_OR_RETURN(std::vector<int32_t> tokens, TokenizeTextFile(tokenizer, c.text, c.lines));
  auto starts = SampleWindowStarts(static_cast<int64_t>(tokens.size()), c.nsamples, seqlen, c.seed);
  if (!starts.ok()) return WithContext(starts.status(), c.text);
  std::vector<int32_t> windows;
  windows.reserve(c.nsamples * seqlen);
  for (int64_t start : *starts) windows.insert(windows.end(), tokens.begin() + start, tokens.begin() + start + seqlen);
  return windows;
}

}  // namespace qshard
