// A grow-only, 64-byte-aligned buffer for the CPU kernels' per-call temporaries (X rounded or
// packed, oneDNN's scratchpad, ...), kept thread_local or with the caller: a fresh
// multi-megabyte allocation on every call would page-fault each time. Growing drops the old
// contents; 64-byte alignment is what oneDNN's memory and the AVX-512 / AMX loads want.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>

namespace dynaprec::cpu {

class ScratchBuffer {
 public:
  /// Room for `count` values of T (at least; the old contents are lost when it grows).
  template <class T>
  T* get(size_t count) {
    const size_t bytes = (count * sizeof(T) + 63) / 64 * 64;
    if (bytes > cap_ || !p_) {
      p_.reset(static_cast<std::byte*>(std::aligned_alloc(64, bytes == 0 ? 64 : bytes)));
      cap_ = p_ ? bytes : 0;
      if (!p_) throw std::bad_alloc();
    }
    return reinterpret_cast<T*>(p_.get());
  }

 private:
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  std::unique_ptr<std::byte, Free> p_;
  size_t cap_ = 0;
};

}  // namespace dynaprec::cpu
