#include "core/thread_pool.h"

#include <algorithm>

namespace qshard {

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i < threads; ++i) helpers_.emplace_back([this] { HelperLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  work_ready_.notify_all();
  for (std::thread& t : helpers_) t.join();
}

void ThreadPool::RunIterations(const std::function<void(int64_t)>& fn, int64_t n) {
  for (int64_t i = next_.fetch_add(1); i < n; i = next_.fetch_add(1)) fn(i);
}

void ThreadPool::ParallelFor(int64_t n, const std::function<void(int64_t)>& fn) {
  if (n <= 0) return;
  if (helpers_.empty() || n == 1) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::lock_guard<std::mutex> turn(caller_mutex_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    fn_ = &fn;
    n_ = n;
    next_.store(0);
    open_ = true;
    ++generation_;
  }
  work_ready_.notify_all();
  RunIterations(fn, n);
  // Every iteration has been claimed; the ones helpers claimed finish before active_ drops to 0,
  // and no helper can join (and read fn_) once the call is closed.
  std::unique_lock<std::mutex> lock(mutex_);
  open_ = false;
  work_done_.wait(lock, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) { return active_ == 0; });
  fn_ = nullptr;
}

void ThreadPool::HelperLoop() {
  uint64_t seen = 0;
  while (true) {
    const std::function<void(int64_t)>* fn;
    int64_t n;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      work_ready_.wait(lock, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      if (!open_) continue;  // woke after the caller finished without it
      ++active_;
      fn = fn_;
      n = n_;
    }
    RunIterations(*fn, n);
    std::lock_guard<std::mutex> lock(mutex_);
    if (--active_ == 0) work_done_.notify_one();
  }
}

void ForChunks(int64_t n, ThreadPool* pool, const std::function<void(int64_t, int64_t)>& body) {
  constexpr int64_t kChunks = 64;
  if (pool == nullptr || pool->threads() == 1 || n < kChunks) {
    body(0, n);
    return;
  }
  const int64_t per_chunk = (n + kChunks - 1) / kChunks;
  pool->ParallelFor((n + per_chunk - 1) / per_chunk,
                    [&](int64_t c) { body(c * per_chunk, std::min(n, (c + 1) * per_chunk)); });
}

}  // namespace qshard
