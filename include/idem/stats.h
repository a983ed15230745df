// idem/stats.h — counters and latency percentiles of a Store.
//
// Stats is a plain snapshot copied out of the Store by Store::GetStats(); counters are cumulative since
// the Store was opened (not persisted across restarts). Each counter is read atomically but the snapshot
// as a whole is not: under load, fields may be a few operations apart.
#ifndef IDEM_STATS_H_
#define IDEM_STATS_H_

#include <cstdint>
#include <string>

#include "absl/time/time.h"

namespace idem {

struct LatencySummary {
  uint64_t count = 0;
  // Percentiles from a log-linear histogram, each reported as the upper end of its bucket (never above
  // `max`): at most 12.5 % above the true value, never below it. Zero when count is 0.
  absl::Duration p50, p99, p999, max;
  absl::Duration sum;  // of every latency recorded (exact, not from the buckets)
};

struct Stats {
  // Verdicts returned by Reserve/ReserveBatch.
  uint64_t reserved = 0;
  uint64_t duplicate = 0;
  uint64_t in_flight = 0;
  uint64_t conflicts = 0;
  // Reservations that replaced an expired lease (also counted in `reserved`).
  uint64_t takeovers = 0;
  // Reserve calls that waited for an in-flight holder (ReserveOptions::wait).
  uint64_t waits = 0;
  // Successful Resume calls that had to close and reopen the DB.
  uint64_t reopens = 0;

  uint64_t committed = 0;
  uint64_t released = 0;
  uint64_t extended = 0;
  // Commit/Extend/Release refused with Aborted because the token no longer holds the reservation.
  uint64_t lease_lost = 0;
  // Of those, the calls whose token was below the store's TokenFloor(): an earlier owner's (a zombie
  // after its partition moved) or an earlier process's.
  uint64_t fenced = 0;

  // Reserve lookups answered without any disk I/O that found the ID absent (filters / memtable). Counts
  // single Reserve calls; ReserveBatch reads with one MultiGet, which cannot tell, and is not counted.
  uint64_t fast_path_hits = 0;
  // Records physically removed by the expiry compaction filter.
  uint64_t expired_removed = 0;
  // Stored values that failed to decode (reported as DataLoss to the caller).
  uint64_t corrupt_records = 0;
  // Calls that failed because RocksDB reported an error (I/O, no space, ...).
  uint64_t storage_errors = 0;
  // Writes refused because free disk space was below Options::min_free_disk_bytes, and the free space
  // last measured on the store's file system (0 when not watched).
  uint64_t disk_refusals = 0;
  uint64_t disk_free_bytes = 0;

  LatencySummary reserve_latency;
  LatencySummary commit_latency;

  // Prometheus text exposition of the fields above, metric names prefixed `idem_` (HELP and TYPE for
  // every family; latencies as summaries with _sum and _count), as `promtool check metrics` accepts.
  std::string ToPrometheus() const;
  // The same metrics as one JSON object: {"idem_reserved_total": 5, ..., "idem_reserve_seconds":
  // [{"labels": {"quantile": "0.5"}, "value": ...}, ..., {"labels": {}, "sum": ...}, {"labels": {}, "count": ...}]}.
  std::string ToJson() const;
};

}  // namespace idem

#endif  // IDEM_STATS_H_
