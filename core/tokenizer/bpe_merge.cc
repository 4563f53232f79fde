#include "core/tokenizer/bpe_merge.h"

#include <algorithm>
#include <functional>

namespace qshard {
namespace {

constexpr int32_t kNone = -1;
constexpr int32_t kRemoved = -1;

struct Candidate {
  uint32_t rank;
  uint32_t position;  // of the pair's left symbol
  int32_t new_id;
};

// One heap of (rank, position) keys: cheapest for the short words most pre-tokenizers make.
class SingleHeapQueue {
 public:
  void Push(const Candidate& c) {
    heap_.push_back({(static_cast<uint64_t>(c.rank) << 32) | c.position, c.new_id});
    std::push_heap(heap_.begin(), heap_.end(), PopsLater);
  }
  bool Pop(Candidate& c) {
    if (heap_.empty()) return false;
    std::pop_heap(heap_.begin(), heap_.end(), PopsLater);
    const Entry& top = heap_.back();
    c = {static_cast<uint32_t>(top.key >> 32), static_cast<uint32_t>(top.key), top.new_id};
    heap_.pop_back();
    return true;
  }

 private:
  struct Entry {
    uint64_t key;
    int32_t new_id;
  };
  // std heaps keep the largest on top; this puts the smallest (rank, position) there.
  static bool PopsLater(const Entry& a, const Entry& b) { return a.key > b.key; }
  std::vector<Entry> heap_;
};

// For long words: a min-heap of positions per rank and a min-heap of the ranks that have
// candidates. Same order as SingleHeapQueue, but the heaps stay small enough to live in
// cache, where one heap over a million candidates would miss on every level.
class RankBucketQueue {
 public:
  explicit RankBucketQueue(uint32_t rank_limit) : buckets_(rank_limit) {}

  void Push(const Candidate& c) {
    Bucket& bucket = buckets_[c.rank];
    if (bucket.positions.empty()) {
      ranks_.push_back(c.rank);
      std::push_heap(ranks_.begin(), ranks_.end(), std::greater<>());
    }
    bucket.new_id = c.new_id;  // a rank stands for one pair, hence one merged token
    bucket.positions.push_back(c.position);
    std::push_heap(bucket.positions.begin(), bucket.positions.end(), std::greater<>());
  }

  bool Pop(Candidate& c) {
    if (ranks_.empty()) return false;
    const uint32_t rank = ranks_.front();
    Bucket& bucket = buckets_[rank];
    std::pop_heap(bucket.positions.begin(), bucket.positions.end(), std::greater<>());
    c = {rank, bucket.positions.back(), bucket.new_id};
    bucket.positions.pop_back();
    if (bucket.positions.empty()) {
      std::pop_heap(ranks_.begin(), ranks_.end(), std::greater<>());
      ranks_.pop_back();
    }
    return true;
  }

 private:
  struct Bucket {
    std::vector<uint32_t> positions;
    int32_t new_id = 0;
  };
  std::vector<Bucket> buckets_;
  std::vector<uint32_t> ranks_;
};

// A symbol of the word being merged, in a doubly linked list over positions. The three
// fields sit together because the merge loop reads them at random positions.
struct Symbol {
  int32_t id;  // kRemoved once merged into its left neighbour
  int32_t prev;
  int32_t next;
};

template <typename Queue>
void MergeWithQueue(const MergeTable& merges, std::vector<int32_t>& ids, Queue& queue) {
  const int32_t n = static_cast<int32_t>(ids.size());
  std::vector<Symbol> symbols(n);
  for (int32_t i = 0; i < n; ++i) symbols[i] = {ids[i], i - 1, i + 1 < n ? i + 1 : kNone};
  const auto push = [&](const MergeRule& rule, int32_t position) {
    queue.Push({rule.rank, static_cast<uint32_t>(position), rule.new_id});
  };
  for (int32_t i = 0; i + 1 < n; ++i) {
    if (const MergeRule* rule = merges.Find(ids[i], ids[i + 1])) push(*rule, i);
  }

  Candidate top;
  while (queue.Pop(top)) {
    Symbol& left = symbols[top.position];
    if (left.id == kRemoved || left.next == kNone) continue;
    Symbol& right = symbols[left.next];
    // Entries go stale when a neighbour merges first; as in Hugging Face, an entry is still
    // applied if the pair now there merges into the same token.
    const MergeRule* current = merges.Find(left.id, right.id);
    if (current == nullptr || current->new_id != top.new_id) continue;

    const int32_t pos = static_cast<int32_t>(top.position);
    left.id = top.new_id;
    right.id = kRemoved;
    left.next = right.next;
    if (left.next != kNone) symbols[left.next].prev = pos;

    if (left.prev != kNone) {
      if (const MergeRule* rule = merges.Find(symbols[left.prev].id, left.id)) {
        push(*rule, left.prev);
      }
    }
    if (left.next != kNone) {
      if (const MergeRule* rule = merges.Find(left.id, symbols[left.next].id)) push(*rule, pos);
    }
  }
  ids.clear();
  for (const Symbol& symbol : symbols) {
    if (symbol.id != kRemoved) ids.push_back(symbol.id);
  }
}

// Below this many symbols the per-rank buckets cost more to set up than they save.
constexpr size_t kBucketQueueMinSymbols = 4096;

}  // namespace

void MergeSymbols(const MergeTable& merges, std::vector<int32_t>& ids) {
  if (ids.size() < 2) return;
  if (ids.size() < kBucketQueueMinSymbols) {
    SingleHeapQueue queue;
    MergeWithQueue(merges, ids, queue);
  } else {
    RankBucketQueue queue(merges.rank_limit);
    MergeWithQueue(merges, ids, queue);
  }
}

}  // namespace qshard
