#include "idem/stats.h"

#include "absl/strings/str_cat.h"

namespace idem {

std::string Stats::ToPrometheus() const {
  std::string out;
  auto counter = [&out](const char* name, const char* help, uint64_t value) {
    absl::StrAppend(&out, "# HELP idem_", name, " ", help, "\n# TYPE idem_", name, " counter\nidem_", name, " ", value,
                    "\n");
  };
  counter("reserved_total", "Reserve verdicts kReserved.", reserved);
  counter("duplicate_total", "Reserve verdicts kDuplicate.", duplicate);
  counter("in_flight_total", "Reserve verdicts kInFlight.", in_flight);
  counter("conflicts_total", "Reserve verdicts kConflict (an ID reused with another payload).", conflicts);
  counter("waits_total", "Reserve calls that waited for an in-flight holder.", waits);
  counter("reopens_total", "Recoveries that reopened the DB.", reopens);
  counter("takeovers_total", "Reservations that replaced an expired lease.", takeovers);
  counter("committed_total", "Successful commits.", committed);
  counter("released_total", "Successful releases.", released);
  counter("extended_total", "Successful lease extensions.", extended);
  counter("lease_lost_total", "Commit/Extend/Release refused because the token lost the lease.", lease_lost);
  counter("fenced_total", "Commit/Extend/Release refused because the token is below the ownership floor.", fenced);
  counter("fast_path_hits_total", "Reserve lookups answered absent without disk I/O.", fast_path_hits);
  counter("expired_removed_total", "Records removed by the expiry compaction filter.", expired_removed);
  counter("corrupt_records_total", "Stored records that failed to decode.", corrupt_records);
  counter("storage_errors_total", "Calls failed by a RocksDB error.", storage_errors);
  counter("disk_refusals_total", "Writes refused because free disk space was below min_free_disk_bytes.",
          disk_refusals);
  absl::StrAppend(&out, "# HELP idem_disk_free_bytes Free bytes last measured on the store's file system.\n",
                  "# TYPE idem_disk_free_bytes gauge\nidem_disk_free_bytes ", disk_free_bytes, "\n");
  auto summary = [&out](const char* name, const LatencySummary& s) {
    absl::StrAppend(&out, "# HELP idem_", name, "_seconds Latency of ", name, ".\n# TYPE idem_", name,
                    "_seconds summary\n");
    absl::StrAppend(&out, "idem_", name, "_seconds{quantile=\"0.5\"} ", absl::ToDoubleSeconds(s.p50), "\n");
    absl::StrAppend(&out, "idem_", name, "_seconds{quantile=\"0.99\"} ", absl::ToDoubleSeconds(s.p99), "\n");
    absl::StrAppend(&out, "idem_", name, "_seconds{quantile=\"0.999\"} ", absl::ToDoubleSeconds(s.p999), "\n");
    absl::StrAppend(&out, "idem_", name, "_seconds_count ", s.count, "\n");
  };
  summary("reserve", reserve_latency);
  summary("commit", commit_latency);
  return out;
}

}  // namespace idem
