// The BPE merge loop: a priority queue of candidate pairs over a linked list of symbols, so a
// word of n symbols costs O(n log n) however long it is (TinyStories-656K's tokenizer feeds
// the whole evaluation text, 1.3 MB, as one word).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace qshard {

struct MergeRule {
  uint32_t rank = 0;   // position in the merges list: lower merges first
  int32_t new_id = 0;  // the id of the merged token
};

inline uint64_t PairKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

struct MergeTable {
  absl::flat_hash_map<uint64_t, MergeRule> rules;  // by PairKey(left id, right id)
  uint32_t rank_limit = 0;                         // one past the largest rank

  const MergeRule* Find(int32_t left, int32_t right) const {
    const auto it = rules.find(PairKey(left, right));
    return it == rules.end() ? nullptr : &it->second;
  }
};

// Merges `ids` in place exactly as Hugging Face's BPE does: repeatedly the applicable pair with
// the lowest rank, the leftmost one among equal ranks, until no pair has a merge rule.
void MergeSymbols(const MergeTable& merges, std::vector<int32_t>& ids);

}  // namespace qshard
