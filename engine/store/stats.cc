#include "idem/stats.h"

#include "absl/strings/str_cat.h"
#include "engine/store/stats_metrics.h"
#include "util/metrics.h"

namespace idem {

namespace engine {

void AddStoreStats(const Stats& s, std::string_view labels, util::Metrics& metrics) {
  using util::MetricType;
  auto counter = [&](const char* name, const char* help, uint64_t value) {
    metrics.Add(name, help, MetricType::kCounter, labels, value);
  };
  counter("idem_reserved_total", "Reserve verdicts kReserved.", s.reserved);
  counter("idem_duplicate_total", "Reserve verdicts kDuplicate.", s.duplicate);
  counter("idem_in_flight_total", "Reserve verdicts kInFlight.", s.in_flight);
  counter("idem_conflicts_total", "Reserve verdicts kConflict (an ID reused with another payload).", s.conflicts);
  counter("idem_waits_total", "Reserve calls that waited for an in-flight holder.", s.waits);
  counter("idem_reopens_total", "Recoveries that reopened the DB.", s.reopens);
  counter("idem_takeovers_total", "Reservations that replaced an expired lease.", s.takeovers);
  counter("idem_committed_total", "Successful commits.", s.committed);
  counter("idem_released_total", "Successful releases.", s.released);
  counter("idem_extended_total", "Successful lease extensions.", s.extended);
  counter("idem_lease_lost_total", "Commit/Extend/Release refused because the token lost the lease.", s.lease_lost);
  counter("idem_fenced_total", "Commit/Extend/Release refused because the token is below the ownership floor.",
          s.fenced);
  counter("idem_fast_path_hits_total", "Reserve lookups answered absent without disk I/O.", s.fast_path_hits);
  counter("idem_expired_removed_total", "Records removed by the expiry compaction filter.", s.expired_removed);
  counter("idem_corrupt_records_total", "Stored records that failed to decode.", s.corrupt_records);
  counter("idem_storage_errors_total", "Calls failed by a RocksDB error.", s.storage_errors);
  counter("idem_disk_refusals_total", "Writes refused because free disk space was below min_free_disk_bytes.",
          s.disk_refusals);
  metrics.Add("idem_disk_free_bytes", "Free bytes last measured on the store's file system.", MetricType::kGauge,
              labels, s.disk_free_bytes);
  auto summary = [&](const char* name, const char* help, const LatencySummary& l) {
    const std::string sep = labels.empty() ? std::string() : std::string(labels) + ",";
    metrics.Add(name, help, MetricType::kSummary, absl::StrCat(sep, "quantile=\"0.5\""), absl::ToDoubleSeconds(l.p50));
    metrics.Add(name, help, MetricType::kSummary, absl::StrCat(sep, "quantile=\"0.99\""), absl::ToDoubleSeconds(l.p99));
    metrics.Add(name, help, MetricType::kSummary, absl::StrCat(sep, "quantile=\"0.999\""),
                absl::ToDoubleSeconds(l.p999));
    metrics.Add(name, help, MetricType::kSummary, labels, absl::ToDoubleSeconds(l.sum), "_sum");
    metrics.Add(name, help, MetricType::kSummary, labels, l.count, "_count");
  };
  summary("idem_reserve_seconds", "Latency of Reserve and ReserveBatch calls.", s.reserve_latency);
  summary("idem_commit_seconds", "Latency of Commit and CommitBatch calls.", s.commit_latency);
}

}  // namespace engine

std::string Stats::ToPrometheus() const {
  util::Metrics metrics;
  engine::AddStoreStats(*this, "", metrics);
  return metrics.Prometheus();
}

std::string Stats::ToJson() const {
  util::Metrics metrics;
  engine::AddStoreStats(*this, "", metrics);
  return metrics.Json();
}

}  // namespace idem
