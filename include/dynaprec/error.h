// Errors for dynaprec.
//
// Library code throws dynaprec::Error; the CLI maps the error's kind to its exit code
// (CONTRACT §2: 2 for bad usage or bad input, 1 for anything else). Internal invariants use
// DP_CHECK, which is always on and accepts only a bool (a string literal is not a condition).
#pragma once

#include <concepts>
#include <stdexcept>
#include <string>

namespace dynaprec {

enum class ErrorKind : uint8_t {
  kInvalidInput,  ///< malformed file, bad value, bad shape: the caller's data is wrong
  kUsage,         ///< bad flag or argument combination
  kUnsupported,   ///< well-formed request that this build or device cannot run
  kIo,            ///< the operating system refused a read or write
  kInternal,      ///< a broken invariant: a bug in dynaprec
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& what) : std::runtime_error(what), kind_(kind) {}
  ErrorKind kind() const { return kind_; }
  /// Exit code per CONTRACT §2.
  int exit_code() const {
    return kind_ == ErrorKind::kInvalidInput || kind_ == ErrorKind::kUsage ||
                   kind_ == ErrorKind::kUnsupported
               ? 2
               : 1;
  }

 private:
  ErrorKind kind_;
};

[[noreturn]] void check_failed(const char* expr, const char* file, int line,
                               const std::string& msg);

/// Always-on invariant check. Only bool is accepted: `DP_CHECK("oops")` does not compile.
template <typename B>
requires std::same_as<B, bool>
inline void check_impl(B ok, const char* expr, const char* file, int line,
                       const std::string& msg = {}) {
  if (!ok) check_failed(expr, file, line, msg);
}

}  // namespace dynaprec

#define DP_CHECK(cond, ...) ::dynaprec::check_impl((cond), #cond, __FILE__, __LINE__, ##__VA_ARGS__)
