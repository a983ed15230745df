// The Kafka member's counters: one atomic per KafkaConsumerStats counter, bumped by whichever job counts
// it (the partition owner, the batch step, the offset committer) and read into the stats in one loop.
#ifndef IDEM_RUNTIME_KAFKA_MEMBER_COUNTERS_H_
#define IDEM_RUNTIME_KAFKA_MEMBER_COUNTERS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <utility>

#include "idem/kafka.h"

namespace idem::kafka {

enum class Counter : size_t {
  kMessages,
  kApplied,
  kDuplicates,
  kRetried,
  kDeadLetters,
  kUnavailable,
  kOffsetCommits,
  kOffsetCommitsRefused,
  kOffsetCommitErrors,
  kChangelogFailures,
  kSnapshots,
  kAssignments,
  kRevocations,
  kLost,
  kRestores,
  kCatchUps,
  kClaims,
  kClaimsLost,
  kRestoreFailures,
  kRestoredBatchesFenced,
  kRestoredBatchesAfterGap,
  kDataLossPartitions,
  kStorePauses,
  kPartialBatches,
  kRestarts,
  kCount,
};

// Thread-safe: counted on the member's thread, read from any.
class MemberCounters {
 public:
  void Add(Counter c, uint64_t n = 1) { values_[static_cast<size_t>(c)].fetch_add(n, std::memory_order_relaxed); }
  // Every counter into its field of `stats`.
  void Fill(KafkaConsumerStats& stats) const {
    for (const auto& [counter, field] : kFields) {
      stats.*field = values_[static_cast<size_t>(counter)].load(std::memory_order_relaxed);
    }
  }

 private:
  using Field = uint64_t KafkaConsumerStats::*;
  static constexpr std::pair<Counter, Field> kFields[] = {
      {Counter::kMessages, &KafkaConsumerStats::messages},
      {Counter::kApplied, &KafkaConsumerStats::applied},
      {Counter::kDuplicates, &KafkaConsumerStats::duplicates},
      {Counter::kRetried, &KafkaConsumerStats::retried},
      {Counter::kDeadLetters, &KafkaConsumerStats::dead_letters},
      {Counter::kUnavailable, &KafkaConsumerStats::unavailable},
      {Counter::kOffsetCommits, &KafkaConsumerStats::offset_commits},
      {Counter::kOffsetCommitsRefused, &KafkaConsumerStats::offset_commits_refused},
      {Counter::kOffsetCommitErrors, &KafkaConsumerStats::offset_commit_errors},
      {Counter::kChangelogFailures, &KafkaConsumerStats::changelog_failures},
      {Counter::kSnapshots, &KafkaConsumerStats::snapshots},
      {Counter::kAssignments, &KafkaConsumerStats::assignments},
      {Counter::kRevocations, &KafkaConsumerStats::revocations},
      {Counter::kLost, &KafkaConsumerStats::lost},
      {Counter::kRestores, &KafkaConsumerStats::restores},
      {Counter::kCatchUps, &KafkaConsumerStats::catch_ups},
      {Counter::kClaims, &KafkaConsumerStats::claims},
      {Counter::kClaimsLost, &KafkaConsumerStats::claims_lost},
      {Counter::kRestoreFailures, &KafkaConsumerStats::restore_failures},
      {Counter::kRestoredBatchesFenced, &KafkaConsumerStats::restored_batches_fenced},
      {Counter::kRestoredBatchesAfterGap, &KafkaConsumerStats::restored_batches_after_gap},
      {Counter::kDataLossPartitions, &KafkaConsumerStats::data_loss_partitions},
      {Counter::kStorePauses, &KafkaConsumerStats::store_pauses},
      {Counter::kPartialBatches, &KafkaConsumerStats::partial_batches},
      {Counter::kRestarts, &KafkaConsumerStats::restarts},
  };
  static_assert(std::size(kFields) == static_cast<size_t>(Counter::kCount), "every counter has its field");
  std::array<std::atomic<uint64_t>, static_cast<size_t>(Counter::kCount)> values_{};
};

}  // namespace idem::kafka

#endif  // IDEM_RUNTIME_KAFKA_MEMBER_COUNTERS_H_
