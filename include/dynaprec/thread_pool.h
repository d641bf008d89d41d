// A small fixed-size thread pool for the CPU kernels.
//
// parallel_for(n, fn) runs fn(i) for i in [0, n) on the pool's threads and the caller, and
// returns when all are done. Tasks are handed out dynamically (an atomic counter), so uneven
// tasks balance. A parallel_for called from inside a task runs its tasks inline on that thread
// (no deadlock).
//
// The threads are OpenMP's team where the build has OpenMP: oneDNN's primitives run on that
// team too, and its threads spin for a while after each primitive, so a second set of threads
// woken between two primitives would fight them for the cores (measured on 2 cores: the
// recognizer 16.3 -> 13.7 ms at fp32, the detector 95 -> 80 ms, with this change alone). The
// pool's own threads (condition variable, one parallel_for at a time per pool, concurrent
// callers serialized) remain for builds without OpenMP, the ThreadSanitizer build (libgomp is
// not instrumented) and DYNAPREC_POOL=threads.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace dynaprec {

class ThreadPool {
 public:
  /// `threads` counts the caller too: ThreadPool(1) runs everything on the caller.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return threads_; }
  /// Whether parallel_for runs on OpenMP's team (see above).
  bool openmp() const { return openmp_; }
  void parallel_for(size_t n, const std::function<void(size_t)>& fn);

  /// The process-wide pool the kernels use; sized by set_default_threads (default: all cores).
  static ThreadPool& default_pool();
  /// Resizes the default pool (n <= 0: all cores). Not to be called while kernels run.
  static void set_default_threads(int n);

 private:
  void worker_loop();
  void run_tasks();

  int threads_ = 1;
  bool openmp_ = false;
  std::vector<std::thread> workers_;
  std::mutex call_mu_;  // serializes parallel_for callers
  std::mutex mu_;
  std::condition_variable wake_, done_;
  const std::function<void(size_t)>* fn_ = nullptr;
  size_t n_ = 0;
  std::atomic<size_t> next_{0};
  size_t generation_ = 0;
  int busy_ = 0;
  size_t acked_ = 0;  // workers that took the current generation
  bool stop_ = false;
};

}  // namespace dynaprec
