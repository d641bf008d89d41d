// The visual report (CONTRACT §2 `--html FILE`): one self-contained HTML file, no network at
// view time. The report's data is embedded as compact JSON in a <script type="application/json">
// and drawn by inline JavaScript on <canvas>: a precision map (layers × portions, one colour per
// format), the output SQNR per portion against the target, bytes and time per portion against
// fp32, the switch log with reasons and a table per layer. Sized for 1,000 portions × 300
// layers (the map is one canvas image, not DOM nodes; long tables are capped and filterable).
#pragma once

#include <cstdint>
#include <string>

#include "dynaprec/session.h"

namespace dynaprec {

/// The HTML page for `r`. `title` defaults to the model's name.
std::string render_html(const Report& r, const std::string& title = {});
/// Writes render_html(r) to `path` (throws Error kIo when it cannot).
void write_html(const Report& r, const std::string& path, const std::string& title = {});

}  // namespace dynaprec

namespace dynaprec {

/// Run totals as the report's summary counts them (CONTRACT §3), with the same work at fp32
/// beside them (energy from the report's EnergyModel: a model, not a measurement).
struct ReportTotals {
  double time_ms = 0;
  uint64_t bytes = 0, bytes_fp32 = 0;  ///< layers' bytes plus transfers to/from the device
  double macs = 0;
  double energy_uj = 0, energy_uj_fp32 = 0;
  double macs_by_format[kFormatCount] = {};
  int canaries = 0, canaries_below_target = 0;
  double canary_ms = 0;  ///< time of the fp32 shadow runs of the canary portions
};
/// `target_db` (NaN: none) counts the canary portions whose output SQNR fell below it.
ReportTotals report_totals(const Report& r, double target_db);

}  // namespace dynaprec
