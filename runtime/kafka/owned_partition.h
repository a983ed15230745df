// One input partition this member was assigned: the small record the partition owner, the batch step
// and the offset committer share, on the member's thread (State and Pause are also read by stats
// readers under OwnedPartitions' lock).
#ifndef IDEM_RUNTIME_KAFKA_OWNED_PARTITION_H_
#define IDEM_RUNTIME_KAFKA_OWNED_PARTITION_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <utility>

#include "absl/time/time.h"
#include "idem/partition_owner.h"
#include "idem/partition_set.h"
#include "idem/processor.h"
#include "runtime/kafka/changelog_producer.h"
#include "runtime/kafka/partition_restorer.h"

namespace idem::kafka {

using Steady = std::chrono::steady_clock;

struct OwnedPartition {
  enum class State { kRestoring, kActive, kStopped };
  enum class Pause { kNone, kStore, kRetry };

  int32_t number = -1;
  PartitionLayout layout;
  State state = State::kRestoring;
  Pause pause = Pause::kNone;
  Steady::time_point assigned_at = Steady::now();

  // Restoring (the partition owner's).
  std::shared_ptr<RestoreJob> job;  // null while waiting to (re)start the restore
  Steady::time_point restart_at;
  absl::Duration restart_backoff = absl::Milliseconds(200);

  // Active.
  Partition* partition = nullptr;
  std::unique_ptr<Processor> processor;
  ClaimId claim;
  int64_t claim_offset = -1;
  std::shared_ptr<RecordTrack> track = std::make_shared<RecordTrack>();  // its changelog records
  std::optional<SnapshotCadence> snapshots;

  // The batch step's.
  int64_t next_offset = -1;   // the next input offset to handle (-1: the first one that comes)
  size_t max_run = SIZE_MAX;  // events per commit, halved when a record was too large
  Steady::time_point resume_at;

  // The offset committer's: (offset to commit, last changelog record it waits for), oldest first.
  std::deque<std::pair<int64_t, uint64_t>> pending;
  int64_t ackable = -1;  // the highest offset whose records are all acknowledged
  int64_t sent = -1;     // the offset last sent in a commit
  int64_t sent_pointer = -1;
  std::optional<int64_t> inherited_pointer;  // the snapshot pointer committed before this member's claim
};

}  // namespace idem::kafka

#endif  // IDEM_RUNTIME_KAFKA_OWNED_PARTITION_H_
