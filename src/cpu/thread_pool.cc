#include "dynaprec/thread_pool.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace dynaprec {

namespace {
// OpenMP's team, unless this build has no OpenMP, is the ThreadSanitizer build (libgomp is not
// instrumented: the pool's own threads are what TSan can check) or DYNAPREC_POOL=threads asks
// for the pool's own threads.
bool want_openmp() {
#if defined(_OPENMP) && !defined(DYNAPREC_POOL_OWN_THREADS)
  const char* v = std::getenv("DYNAPREC_POOL");
  return !(v && std::strcmp(v, "threads") == 0);
#else
  return false;
#endif
}
}  // namespace

ThreadPool::ThreadPool(int threads) : threads_(threads < 1 ? 1 : threads), openmp_(want_openmp()) {
  if (openmp_) return;
  for (int i = 1; i < threads_; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

namespace {
// Depth of pool tasks running on this thread: a parallel_for from inside a task (of any pool)
// runs inline instead of waiting for a pool that may be busy with its caller (a deadlock).
thread_local int task_depth = 0;
struct TaskScope {
  TaskScope() { ++task_depth; }
  ~TaskScope() { --task_depth; }
};
}  // namespace

void ThreadPool::run_tasks() {
  const TaskScope scope;
  for (size_t i = next_.fetch_add(1); i < n_; i = next_.fetch_add(1)) (*fn_)(i);
}

void ThreadPool::worker_loop() {
  size_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      ++acked_;
      ++busy_;
    }
    run_tasks();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (--busy_ == 0) done_.notify_all();
    }
  }
}

void ThreadPool::parallel_for(size_t n, const std::function<void(size_t)>& fn) {
  if (n == 0) return;
  if (threads_ == 1 || n == 1 || task_depth > 0) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
#if defined(_OPENMP)
  if (openmp_) {
    if (omp_in_parallel()) {  // inside some other parallel region: inline, no nested team
      for (size_t i = 0; i < n; ++i) fn(i);
      return;
    }
    std::atomic<size_t> next{0};
    const int team = static_cast<int>(std::min<size_t>(n, static_cast<size_t>(threads_)));
#pragma omp parallel num_threads(team)
    {
      const TaskScope scope;
      for (size_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) fn(i);
    }
    return;
  }
#endif
  std::lock_guard<std::mutex> call(call_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    fn_ = &fn;
    n_ = n;
    next_.store(0);
    acked_ = 0;
    ++generation_;
  }
  wake_.notify_all();
  run_tasks();
  std::unique_lock<std::mutex> lock(mu_);
  // Every worker must have taken this generation and finished: none can wake late and read
  // the next call's fields half-written.
  done_.wait(lock, [&] { return acked_ == workers_.size() && busy_ == 0; });
  fn_ = nullptr;
}

namespace {
std::unique_ptr<ThreadPool>& default_slot() {
  static std::unique_ptr<ThreadPool> pool;
  return pool;
}
int all_cores() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}
}  // namespace

ThreadPool& ThreadPool::default_pool() {
  auto& p = default_slot();
  if (!p) p = std::make_unique<ThreadPool>(all_cores());
  return *p;
}

void ThreadPool::set_default_threads(int n) {
  default_slot() = std::make_unique<ThreadPool>(n <= 0 ? all_cores() : n);
}

}  // namespace dynaprec
