// core/thread_pool: every iteration runs exactly once, across pool sizes, concurrent callers and
// calls too short for the helpers to wake.
#include "core/thread_pool.h"

#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace qshard {
namespace {

TEST(ThreadPoolTest, RunsEveryIterationOnce) {
  for (int threads : {1, 2, 5}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.threads(), threads);
    for (int64_t n : {0, 1, 3, 97}) {
      std::vector<std::atomic<int>> hits(n);
      pool.ParallelFor(n, [&](int64_t i) { hits[i].fetch_add(1); });
      for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 1) << "threads " << threads << " n " << n << " i " << i;
    }
  }
}

TEST(ThreadPoolTest, UsesSeveralThreads) {
  ThreadPool pool(3);
  std::atomic<int> inside{0};
  std::atomic<int> most{0};
  pool.ParallelFor(64, [&](int64_t) {
    const int now = inside.fetch_add(1) + 1;
    int seen = most.load();
    while (now > seen && !most.compare_exchange_weak(seen, now)) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    inside.fetch_sub(1);
  });
  EXPECT_GT(most.load(), 1);
}

// Calls much shorter than a helper's wake-up: helpers join late or not at all (the caller then
// runs every iteration), and one that wakes during a later call must run that call's function.
TEST(ThreadPoolTest, ShortCallsRunEveryIterationOnce) {
  ThreadPool pool(3);
  for (int call = 0; call < 5000; ++call) {
    int hits[3] = {0, 0, 0};
    std::atomic<int> total{0};
    pool.ParallelFor(3, [&](int64_t i) {
      ++hits[i];  // distinct i per call: no two threads touch the same element
      total.fetch_add(call);
    });
    ASSERT_EQ(hits[0] + hits[1] + hits[2], 3) << "call " << call;
    ASSERT_TRUE(hits[0] == 1 && hits[1] == 1 && hits[2] == 1) << "call " << call;
    ASSERT_EQ(total.load(), 3 * call) << "call " << call;
  }
}

TEST(ThreadPoolTest, ConcurrentCallersTakeTurns) {
  ThreadPool pool(3);
  std::atomic<int64_t> total{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([&] {
      for (int round = 0; round < 50; ++round) pool.ParallelFor(10, [&](int64_t i) { total.fetch_add(i); });
    });
  }
  for (std::thread& t : callers) t.join();
  EXPECT_EQ(total.load(), 4 * 50 * 45);
}

}  // namespace
}  // namespace qshard
