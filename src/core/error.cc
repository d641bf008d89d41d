#include "dynaprec/error.h"

#include <string>

namespace dynaprec {

void check_failed(const char* expr, const char* file, int line, const std::string& msg) {
  std::string what =
      std::string("internal check failed: ") + expr + " at " + file + ":" + std::to_string(line);
  if (!msg.empty()) what += ": " + msg;
  throw Error(ErrorKind::kInternal, what);
}

}  // namespace dynaprec
