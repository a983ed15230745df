// The batch step: a partition's run of polled messages → exactly-once steps (one ReserveBatch and one
// CommitBatch per run of distinct IDs), with the view that shows a handler its batch's earlier
// effects, and dead letters. It returns where it stopped and why; pausing, restarting and committing
// offsets are the partition owner's and the committer's.
#ifndef IDEM_RUNTIME_KAFKA_PARTITION_BATCH_H_
#define IDEM_RUNTIME_KAFKA_PARTITION_BATCH_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <librdkafka/rdkafka.h>

#include "absl/types/span.h"
#include "idem/kafka.h"
#include "idem/latency_histogram.h"
#include "runtime/kafka/changelog_producer.h"
#include "runtime/kafka/member_counters.h"
#include "runtime/kafka/owned_partition.h"

namespace idem::kafka {

// Used on the member's thread.
class PartitionBatch {
 public:
  enum class Stop {
    kNone,              // every message settled
    kStoreUnavailable,  // the store failed: pause until it recovers (its state is then rebuilt)
    kRetry,             // an event must be read again (handler retry, lease lost): pause retry_pause
  };
  struct Result {
    size_t settled = 0;  // messages applied, duplicate or dead-lettered (o.next_offset is past them)
    bool ran = false;    // at least one step ran (o.next_offset moved, or names the message to read again)
    Stop stop = Stop::kNone;
  };

  PartitionBatch(const KafkaConsumerOptions* options, ChangelogProducer* producer, MemberCounters* counters,
                 LatencyHistogram* latency);
  ~PartitionBatch();

  // Handles `messages` (one partition's, in offset order) of the active, unpaused partition `o`.
  Result Handle(OwnedPartition& o, const std::vector<rd_kafka_message_t*>& messages);

 private:
  size_t HandleRun(OwnedPartition& o, absl::Span<const KafkaMessage> kms, const std::vector<std::optional<Event>>& of,
                   Stop* stop);
  void DeadLetter(OwnedPartition& o, const KafkaMessage& m, const std::string& reason);

  const KafkaConsumerOptions* const options_;
  ChangelogProducer* const producer_;
  MemberCounters* const counters_;
  LatencyHistogram* const latency_;
  std::unique_ptr<KafkaPartitionView::Overlay> overlay_;
};

}  // namespace idem::kafka

#endif  // IDEM_RUNTIME_KAFKA_PARTITION_BATCH_H_
