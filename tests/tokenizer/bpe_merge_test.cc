// MergeSymbols against the textbook loop (repeatedly merge the lowest-ranked adjacent pair,
// leftmost first) on random merge tables and words of awkward lengths, including words long
// enough for the per-rank bucket queue.
#include "core/tokenizer/bpe_merge.h"

#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace qshard {
namespace {

std::vector<int32_t> NaiveMerge(const MergeTable& merges, std::vector<int32_t> ids) {
  while (true) {
    size_t best = ids.size();
    const MergeRule* best_rule = nullptr;
    for (size_t i = 0; i + 1 < ids.size(); ++i) {
      const MergeRule* rule = merges.Find(ids[i], ids[i + 1]);
      if (rule != nullptr && (best_rule == nullptr || rule->rank < best_rule->rank)) {
        best = i;
        best_rule = rule;
      }
    }
    if (best_rule == nullptr) return ids;
    ids[best] = best_rule->new_id;
    ids.erase(ids.begin() + best + 1);
  }
}

// Rules over a small alphabet, each producing a distinct new token (as in a trained
// vocabulary), so the textbook loop and Hugging Face's queue must agree.
MergeTable RandomMerges(std::mt19937& rng, int alphabet, int rules) {
  MergeTable merges;
  int32_t next_id = alphabet;
  for (int r = 0; r < rules; ++r) {
    std::uniform_int_distribution<int32_t> pick(0, next_id - 1);
    const int32_t left = pick(rng), right = pick(rng);
    if (merges.rules.contains(PairKey(left, right))) continue;
    merges.rules[PairKey(left, right)] = {static_cast<uint32_t>(r), next_id++};
  }
  merges.rank_limit = static_cast<uint32_t>(rules);
  return merges;
}

TEST(BpeMergeTest, MatchesTextbookLoopOnRandomInput) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 40; ++trial) {
    const int alphabet = 2 + trial % 5;
    const MergeTable merges = RandomMerges(rng, alphabet, 3 + trial * 5);
    std::vector<size_t> lengths = {0, 1, 2, 3, 7, 61, 300};
    if (trial % 10 == 0) lengths.insert(lengths.end(), {4095, 4096, 5003});  // both queues
    for (const size_t length : lengths) {
      std::uniform_int_distribution<int32_t> symbol(0, alphabet - 1);
      std::vector<int32_t> ids(length);
      for (int32_t& id : ids) id = symbol(rng);
      std::vector<int32_t> merged = ids;
      MergeSymbols(merges, merged);
      ASSERT_EQ(merged, NaiveMerge(merges, ids)) << "trial " << trial << ", length " << length;
    }
  }
}

TEST(BpeMergeTest, RepeatedPairMergesLeftmostFirst) {
  // "a a a ..." with the rule (a, a) -> A: pairs merge from the left, an odd "a" stays last.
  MergeTable merges;
  merges.rules[PairKey(0, 0)] = {0, 1};
  merges.rank_limit = 1;
  for (const size_t length : {3u, 4097u}) {
    std::vector<int32_t> ids(length, 0);
    MergeSymbols(merges, ids);
    std::vector<int32_t> expected(length / 2, 1);
    expected.push_back(0);
    EXPECT_EQ(ids, expected) << "length " << length;
  }
}

}  // namespace
}  // namespace qshard
