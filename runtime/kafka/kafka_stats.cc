// KafkaConsumerStats as Prometheus text, through the one metrics collector (util/metrics.h).
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "idem/kafka.h"
#include "util/metrics.h"

namespace idem {

std::string KafkaConsumerStats::ToPrometheus() const {
  util::Metrics m;
  auto counter = [&](const char* name, const char* help, uint64_t v) {
    m.Add(name, help, util::MetricType::kCounter, "", v);
  };
  counter("idem_kafka_messages_total", "Input messages handled (applied, duplicate or dead-lettered).", messages);
  counter("idem_kafka_applied_total", "Events applied.", applied);
  counter("idem_kafka_duplicates_total", "Events answered as duplicates.", duplicates);
  counter("idem_kafka_retried_total", "Batches stopped to be read again (handler retry, lease lost).", retried);
  counter("idem_kafka_dead_letters_total", "Messages dead-lettered.", dead_letters);
  counter("idem_kafka_dead_letter_failures_total", "Dead letters that could not be produced (logged).",
          dead_letter_failures);
  counter("idem_kafka_offset_commits_total", "Partition offsets committed and accepted.", offset_commits);
  counter("idem_kafka_offset_commits_refused_total",
          "Offset commits refused by the group: this member had been replaced (a zombie).", offset_commits_refused);
  counter("idem_kafka_offset_commit_errors_total", "Offset commits that failed otherwise.", offset_commit_errors);
  counter("idem_kafka_changelog_records_total", "Changelog records produced.", changelog_records);
  counter("idem_kafka_changelog_bytes_total", "Changelog record bytes produced.", changelog_bytes);
  counter("idem_kafka_changelog_failures_total", "Partitions stopped because a changelog record failed.",
          changelog_failures);
  counter("idem_kafka_snapshots_total", "Snapshots written to the changelog.", snapshots);
  counter("idem_kafka_assignments_total", "Partitions assigned.", assignments);
  counter("idem_kafka_revocations_total", "Partitions revoked.", revocations);
  counter("idem_kafka_lost_total", "Partitions whose assignment was lost.", lost);
  counter("idem_kafka_restores_total", "Partitions restored from a snapshot or the log.", restores);
  counter("idem_kafka_catch_ups_total", "Partitions resumed from their local copy and the log's tail.", catch_ups);
  counter("idem_kafka_claims_total", "Claims this member won.", claims);
  counter("idem_kafka_claims_lost_total", "Claims this member lost to another.", claims_lost);
  counter("idem_kafka_restore_failures_total", "Restores that failed and were retried.", restore_failures);
  counter("idem_kafka_restored_batches_fenced_total",
          "Changelog batches ignored by restores: written by superseded owners.", restored_batches_fenced);
  counter("idem_kafka_restored_batches_after_gap_total",
          "Changelog batches ignored by restores: an earlier batch of their claim is missing from the log.",
          restored_batches_after_gap);
  counter("idem_kafka_data_loss_partitions_total", "Partitions left paused: their changelog lost their state.",
          data_loss_partitions);
  counter("idem_kafka_partial_batches_total",
          "Batches where an event lost its lease while later ones, which may have read its effects, committed.",
          partial_batches);
  counter("idem_kafka_restarts_total",
          "Partitions rebuilt from their changelog after a failed record or a failed store write.", restarts);
  counter("idem_kafka_store_pauses_total", "Partitions paused by a store failure.", store_pauses);
  counter("idem_kafka_fenced_total", "Store calls refused below the token floor.", fenced);
  m.Add("idem_kafka_active_partitions", "Partitions restored, claimed and consumed.", util::MetricType::kGauge, "",
        static_cast<uint64_t>(active_partitions));
  m.Add("idem_kafka_paused_partitions", "Partitions assigned but not consumed (restoring, paused, stopped).",
        util::MetricType::kGauge, "", static_cast<uint64_t>(paused_partitions));
  m.Add("idem_kafka_restore_seconds_max", "The longest assignment-to-resumption time.", util::MetricType::kGauge, "",
        max_restore_seconds);
  for (const auto& [partition, lag] : input_lag) {
    if (lag < 0) continue;  // not fetched yet: no figure rather than a wrong one
    m.Add("idem_kafka_input_lag", "Input messages beyond this member's position, per assigned partition.",
          util::MetricType::kGauge, absl::StrCat("partition=\"", partition, "\""), static_cast<uint64_t>(lag));
  }
  const char* step = "idem_kafka_step_seconds";
  const char* help = "One partition batch: reserve, handlers, commit, changelog enqueue.";
  m.Add(step, help, util::MetricType::kSummary, "quantile=\"0.5\"", absl::ToDoubleSeconds(step_latency.p50));
  m.Add(step, help, util::MetricType::kSummary, "quantile=\"0.99\"", absl::ToDoubleSeconds(step_latency.p99));
  m.Add(step, help, util::MetricType::kSummary, "", absl::ToDoubleSeconds(step_latency.sum), "_sum");
  m.Add(step, help, util::MetricType::kSummary, "", step_latency.count, "_count");
  return m.Prometheus();
}

}  // namespace idem
