#include "engine/calibration_shards.h"

namespace qshard {

WindowRange ShardWindows(int64_t nsamples, int shards, int shard) {
  const int64_t begin = nsamples * shard / shards, end = nsamples * (shard + 1) / shards;
  return {begin, end - begin};
}

std::vector<int> ShardsOfWorker(int shards, int workers, int worker) {
  std::vector<int> owned;
  for (int s = shards * worker / workers; s < shards * (worker + 1) / workers; ++s) owned.push_back(s);
  return owned;
}

}  // namespace qshard
