// Calibration shards: the job's windows cut into S contiguous ranges (conventions.md,
// Calibration). Statistics are summed per shard in window order and the shard sums are added
// along a fixed binary tree over the shards in shard order (statistics_tree.h), so the bytes
// depend on S but not on which worker owns which shard.
#pragma once

#include <cstdint>
#include <vector>

namespace qshard {

struct WindowRange {
  int64_t first = 0;
  int64_t count = 0;
};

// The windows of shard `shard` of `shards` over `nsamples` windows (some may be empty when
// there are fewer windows than shards).
WindowRange ShardWindows(int64_t nsamples, int shards, int shard);

// The shards worker `worker` of `workers` owns: a contiguous, balanced range.
std::vector<int> ShardsOfWorker(int shards, int workers, int worker);

}  // namespace qshard
