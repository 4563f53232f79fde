// A small fixed pool of threads with a blocking ParallelFor, for loops whose iterations are
// independent (attention over (window, head) pairs, rows of logits). The calling thread works
// too, so a pool of N threads starts N-1 helpers; a pool of 1 runs everything inline.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"

namespace qshard {

class ThreadPool {
 public:
  // `threads` counts the caller; 0 or less means one per hardware thread.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return static_cast<int>(helpers_.size()) + 1; }

  // Runs fn(i) for every i in [0, n) and returns when all calls have finished. Iterations are
  // handed out one at a time, so give each a sizeable piece of work. Concurrent callers take
  // turns; fn must not call ParallelFor on the same pool (it would wait for itself).
  void ParallelFor(int64_t n, const std::function<void(int64_t)>& fn);

 private:
  void HelperLoop();
  void RunIterations(const std::function<void(int64_t)>& fn, int64_t n);

  std::vector<std::thread> helpers_;
  std::mutex caller_mutex_;  // one ParallelFor at a time
  std::mutex mutex_;
  std::condition_variable work_ready_;
  std::condition_variable work_done_;
  const std::function<void(int64_t)>* fn_ ABSL_GUARDED_BY(mutex_) = nullptr;
  int64_t n_ ABSL_GUARDED_BY(mutex_) = 0;
  uint64_t generation_ ABSL_GUARDED_BY(mutex_) = 0;  // bumped once per ParallelFor
  // Helpers may join the current ParallelFor only while it is open: the caller closes it when
  // its own share is done and then waits only for the helpers that joined (active_), not for
  // ones that have not woken yet, which on a loaded machine can take milliseconds.
  bool open_ ABSL_GUARDED_BY(mutex_) = false;
  int active_ ABSL_GUARDED_BY(mutex_) = 0;
  bool stop_ ABSL_GUARDED_BY(mutex_) = false;
  std::atomic<int64_t> next_{0};
};

// Runs body(first, end) over [0, n) in up to 64 chunks, on the pool's threads when there is one
// (null: inline); chunks are handed out one at a time, so the rows of a triangle balance by
// themselves.
void ForChunks(int64_t n, ThreadPool* pool, const std::function<void(int64_t, int64_t)>& body);

}  // namespace qshard
