#include "core/tokenizer/split.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace qshard {

absl::StatusOr<SplitBehavior> ParseSplitBehavior(std::string_view name) {
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  return absl::InvalidArgumentError(absl::StrFormat("unknown split behavior '%s'", name));
}

std::vector<Segment> FindStringMatches(std::string_view text, std::string_view pattern) {
  std::vector<Segment> segments;
  if (pattern.empty()) {
    segments.push_back({0, text.size(), false});
    return segments;
  }
  size_t previous_end = 0;
  for (size_t found = text.find(pattern); found != std::string_view::npos;
       found = text.find(pattern, found + pattern.size())) {
    if (found > previous_end) segments.push_back({previous_end, found, false});
    segments.push_back({found, found + pattern.size(), true});
    previous_end = found + pattern.size();
  }
  if (previous_end < text.size()) segments.push_back({previous_end, text.size(), false});
  return segments;
}

std::vector<Segment> ApplySplitBehavior(std::vector<Segment> segments, SplitBehavior behavior,
                                        bool invert) {
  if (invert) {
    for (Segment& s : segments) s.is_match = !s.is_match;
  }
  std::vector<Segment> pieces;
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kRemoved:
      for (const Segment& s : segments) {
        if (!s.is_match) pieces.push_back(s);
      }
      break;
    case SplitBehavior::kIsolated:
      pieces = segments;
      break;
    case SplitBehavior::kMergedWithPrevious:
      // A match (the first of a run) extends the piece before it.
      for (const Segment& s : segments) {
        if (s.is_match && !previous_match && !pieces.empty()) {
          pieces.back().end = s.end;
        } else {
          pieces.push_back(s);
        }
        previous_match = s.is_match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      // Mirror image: walking backwards, a match (the last of a run) extends the piece after it.
      for (auto it = segments.rbegin(); it != segments.rend(); ++it) {
        if (it->is_match && !previous_match && !pieces.empty()) {
          pieces.back().begin = it->begin;
        } else {
          pieces.push_back(*it);
        }
        previous_match = it->is_match;
      }
      std::reverse(pieces.begin(), pieces.end());
      break;
    case SplitBehavior::kContiguous:
      for (const Segment& s : segments) {
        if (s.is_match == previous_match && !pieces.empty()) {
          pieces.back().end = s.end;
        } else {
          pieces.push_back(s);
        }
        previous_match = s.is_match;
      }
      break;
  }
  std::erase_if(pieces, [](const Segment& s) { return s.begin == s.end; });
  return pieces;
}

}  // namespace qshard
