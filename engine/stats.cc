#include "idem/stats.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/prometheus.h"

namespace idem {

namespace engine {

std::string PrometheusLabelValue(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string PrometheusText(const std::vector<LabeledStats>& all) {
  std::string out;
  // One HELP/TYPE per metric, then a sample per labeled Stats: Prometheus wants a metric's samples together.
  auto braces = [](const std::string& labels) {
    return labels.empty() ? std::string() : absl::StrCat("{", labels, "}");
  };
  auto counter = [&](const char* name, const char* help, uint64_t Stats::*field) {
    absl::StrAppend(&out, "# HELP idem_", name, " ", help, "\n# TYPE idem_", name, " counter\n");
    for (const LabeledStats& s : all) absl::StrAppend(&out, "idem_", name, braces(s.labels), " ", s.stats.*field, "\n");
  };
  counter("reserved_total", "Reserve verdicts kReserved.", &Stats::reserved);
  counter("duplicate_total", "Reserve verdicts kDuplicate.", &Stats::duplicate);
  counter("in_flight_total", "Reserve verdicts kInFlight.", &Stats::in_flight);
  counter("conflicts_total", "Reserve verdicts kConflict (an ID reused with another payload).", &Stats::conflicts);
  counter("waits_total", "Reserve calls that waited for an in-flight holder.", &Stats::waits);
  counter("reopens_total", "Recoveries that reopened the DB.", &Stats::reopens);
  counter("takeovers_total", "Reservations that replaced an expired lease.", &Stats::takeovers);
  counter("committed_total", "Successful commits.", &Stats::committed);
  counter("released_total", "Successful releases.", &Stats::released);
  counter("extended_total", "Successful lease extensions.", &Stats::extended);
  counter("lease_lost_total", "Commit/Extend/Release refused because the token lost the lease.", &Stats::lease_lost);
  counter("fenced_total", "Commit/Extend/Release refused because the token is below the ownership floor.",
          &Stats::fenced);
  counter("fast_path_hits_total", "Reserve lookups answered absent without disk I/O.", &Stats::fast_path_hits);
  counter("expired_removed_total", "Records removed by the expiry compaction filter.", &Stats::expired_removed);
  counter("corrupt_records_total", "Stored records that failed to decode.", &Stats::corrupt_records);
  counter("storage_errors_total", "Calls failed by a RocksDB error.", &Stats::storage_errors);
  counter("disk_refusals_total", "Writes refused because free disk space was below min_free_disk_bytes.",
          &Stats::disk_refusals);
  absl::StrAppend(&out, "# HELP idem_disk_free_bytes Free bytes last measured on the store's file system.\n",
                  "# TYPE idem_disk_free_bytes gauge\n");
  for (const LabeledStats& s : all) {
    absl::StrAppend(&out, "idem_disk_free_bytes", braces(s.labels), " ", s.stats.disk_free_bytes, "\n");
  }
  auto summary = [&](const char* name, LatencySummary Stats::*field) {
    absl::StrAppend(&out, "# HELP idem_", name, "_seconds Latency of ", name, ".\n# TYPE idem_", name,
                    "_seconds summary\n");
    for (const LabeledStats& s : all) {
      const LatencySummary& l = s.stats.*field;
      const std::string sep = s.labels.empty() ? "" : absl::StrCat(s.labels, ",");
      absl::StrAppend(&out, "idem_", name, "_seconds{", sep, "quantile=\"0.5\"} ", absl::ToDoubleSeconds(l.p50), "\n");
      absl::StrAppend(&out, "idem_", name, "_seconds{", sep, "quantile=\"0.99\"} ", absl::ToDoubleSeconds(l.p99), "\n");
      absl::StrAppend(&out, "idem_", name, "_seconds{", sep, "quantile=\"0.999\"} ", absl::ToDoubleSeconds(l.p999),
                      "\n");
      absl::StrAppend(&out, "idem_", name, "_seconds_count", braces(s.labels), " ", l.count, "\n");
    }
  };
  summary("reserve", &Stats::reserve_latency);
  summary("commit", &Stats::commit_latency);
  return out;
}

}  // namespace engine

std::string Stats::ToPrometheus() const { return engine::PrometheusText({engine::LabeledStats{"", *this}}); }

}  // namespace idem
