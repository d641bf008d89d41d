// The thread pool: every task runs exactly once, on both threads, across many calls and from
// concurrent callers. Also built and run under ThreadSanitizer (scripts/test.sh).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "dynaprec/thread_pool.h"

namespace dynaprec {
namespace {

TEST(ThreadPool, EveryTaskRunsOnceAcrossManyCalls) {
  ThreadPool pool(3);
  EXPECT_EQ(pool.threads(), 3);
  for (size_t n : {size_t{0}, size_t{1}, size_t{2}, size_t{7}, size_t{1000}}) {
    for (int rep = 0; rep < 50; ++rep) {
      std::vector<std::atomic<int>> hits(n);
      pool.parallel_for(n, [&](size_t i) { hits[i].fetch_add(1); });
      for (size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
    }
  }
}

TEST(ThreadPool, WorkersReallyRun) {
  ThreadPool pool(2);
  const auto caller = std::this_thread::get_id();
  std::atomic<int> on_worker{0};
  pool.parallel_for(16, [&](size_t) {
    const auto t0 = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(2)) {
    }
    if (std::this_thread::get_id() != caller) on_worker.fetch_add(1);
  });
  EXPECT_GT(on_worker.load(), 0);
}

TEST(ThreadPool, ConcurrentCallersAreSerialized) {
  ThreadPool pool(2);
  std::atomic<long> sum{0};
  auto caller = [&] {
    for (int r = 0; r < 100; ++r) pool.parallel_for(64, [&](size_t i) { sum.fetch_add(long(i)); });
  };
  std::thread a(caller), b(caller);
  a.join();
  b.join();
  EXPECT_EQ(sum.load(), 2L * 100L * (63L * 64L / 2L));
}

TEST(ThreadPool, SingleThreadRunsOnCaller) {
  ThreadPool pool(1);
  const auto caller = std::this_thread::get_id();
  bool all_on_caller = true;
  pool.parallel_for(10, [&](size_t) { all_on_caller &= std::this_thread::get_id() == caller; });
  EXPECT_TRUE(all_on_caller);
}

TEST(ThreadPool, NestedCallsRunInline) {
  ThreadPool pool(2);
  std::atomic<int> inner{0};
  pool.parallel_for(4, [&](size_t) { pool.parallel_for(8, [&](size_t) { inner.fetch_add(1); }); });
  EXPECT_EQ(inner.load(), 32);
}

}  // namespace
}  // namespace dynaprec
