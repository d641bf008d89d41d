#include "dynaprec/formats.h"

#include <string>

namespace dynaprec {

std::optional<Format> format_from_name(std::string_view name) {
  for (const FormatInfo& row : kFormats)
    if (row.name == name) return row.format;
  return std::nullopt;
}

std::string_view format_names_list() {
  static const std::string list = [] {
    std::string s;
    for (const FormatInfo& row : kFormats) {
      if (!s.empty()) s += ", ";
      s += row.name;
    }
    return s;
  }();
  return list;
}

}  // namespace dynaprec
