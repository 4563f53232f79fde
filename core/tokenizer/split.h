// Splitting text by pattern matches the way Hugging Face's Split/Metaspace/ByteLevel
// pre-tokenizers do: the matches and the gaps between them, then a delimiter behaviour
// (removed, isolated, merged with previous/next, contiguous) deciding the pieces.
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace qshard {

// A byte range of the text; `is_match` marks pattern matches (vs. the gaps between them).
struct Segment {
  size_t begin = 0;
  size_t end = 0;
  bool is_match = false;
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// Parses Hugging Face's names ("Removed", "Isolated", "MergedWithPrevious", ...).
absl::StatusOr<SplitBehavior> ParseSplitBehavior(std::string_view name);

// Non-overlapping occurrences of `pattern`, left to right, with the gaps: the segments cover
// the whole text in order.
std::vector<Segment> FindStringMatches(std::string_view text, std::string_view pattern);

// Same for the GPT-2 pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// implemented by hand (every character is matched, so there are no gaps).
std::vector<Segment> FindGpt2Matches(std::string_view text);

// The pieces (non-empty byte ranges, as Segments) that `behavior` makes of `segments`;
// `invert` swaps the roles of matches and gaps first.
std::vector<Segment> ApplySplitBehavior(std::vector<Segment> segments, SplitBehavior behavior,
                                        bool invert);

}  // namespace qshard
