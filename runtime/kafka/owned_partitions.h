// The partition owner: the input partitions this member was assigned, each through its life — assigned
// (paused, its restore submitted), restored and claimed, activated (its commit hook producing the
// claim's Batch records), paused and resumed, restarted from its changelog after a failure, snapshot
// when due, revoked or lost. The rules it follows are the partition layer's (idem/partition_owner.h);
// what it does here is Kafka's: pause, seek, resume, produce.
#ifndef IDEM_RUNTIME_KAFKA_OWNED_PARTITIONS_H_
#define IDEM_RUNTIME_KAFKA_OWNED_PARTITIONS_H_

#include <map>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

#include <librdkafka/rdkafka.h>

#include "idem/kafka.h"
#include "runtime/kafka/changelog_producer.h"
#include "runtime/kafka/member_counters.h"
#include "runtime/kafka/offset_committer.h"
#include "runtime/kafka/owned_partition.h"
#include "runtime/kafka/partition_batch.h"
#include "runtime/kafka/partition_restorer.h"

namespace idem::kafka {

// Used on the member's thread; Active, Counts and RestoreSeconds from any thread.
class OwnedPartitions {
 public:
  OwnedPartitions(const KafkaConsumerOptions* options, PartitionSet* set, rd_kafka_t* consumer,
                  ChangelogProducer* producer, PartitionRestorer* restorer, OffsetCommitter* committer,
                  MemberCounters* counters, bool reset_earliest)
      : options_(options),
        set_(set),
        consumer_(consumer),
        producer_(producer),
        restorer_(restorer),
        committer_(committer),
        counters_(counters),
        reset_earliest_(reset_earliest),
        processor_options_(ProcessorOptionsFor(*options)) {}

  // An assignment: the partitions' families made together (one OPTIONS rewrite, PartitionSet::
  // PrepareFamilies), then each restored and activated.
  void AssignAll(const std::vector<int32_t>& numbers);
  void Assign(int32_t number);
  // Ends this member's hold of a partition: revoked (lost: the group gave it away already).
  void Stop(int32_t number, bool lost);
  void StopAll();
  // Activates partitions whose restore finished; retries failed restores when due.
  void AdvanceRestores();
  // Resumes partitions whose store recovered or whose retry is due; restarts those whose changelog
  // failed.
  void CheckPartitions();
  // Pauses `o` after a batch stopped early.
  void AfterBatch(OwnedPartition& o, PartitionBatch::Stop stop);
  void MaybeSnapshot();

  // A partition is restoring or waiting out a pause: the poll should come back soon.
  bool Waiting() const;
  // The active, unpaused partition of `number`, or null.
  OwnedPartition* Consuming(int32_t number);
  OwnedPartition* Find(int32_t number);
  std::vector<OwnedPartition*> All();

  std::vector<int32_t> Active() const;
  void Count(KafkaConsumerStats& stats) const;  // active, paused, restore seconds

 private:
  using State = OwnedPartition::State;
  using Pause = OwnedPartition::Pause;

  void StartRestore(OwnedPartition& o);
  // `resume`: false when the partition is being revoked (activated only to be kept with its claim).
  void Activate(OwnedPartition& o, const RestoreJob& job, bool resume = true);
  void SetState(OwnedPartition& o, State state);
  PartitionLayout LayoutOf(int32_t number) const;
  void PausePartition(OwnedPartition& o, Pause why);
  // Seeks (when `offset` names one) and resumes fetching the partition.
  void Resume(OwnedPartition& o, int64_t offset);
  // Stops an active partition, drops its local copy and restores it from its changelog (the events
  // since the group's committed offset come back).
  void Restart(OwnedPartition& o, std::string_view why);

  const KafkaConsumerOptions* const options_;
  PartitionSet* const set_;
  rd_kafka_t* const consumer_;
  ChangelogProducer* const producer_;
  PartitionRestorer* const restorer_;
  OffsetCommitter* const committer_;
  MemberCounters* const counters_;
  const bool reset_earliest_;
  // Every partition's Processor runs its recovery and heartbeats on one ProcessorThread (the caller's,
  // or the member's own), not on threads of its own: the member's threads do not grow with partitions.
  static ProcessorOptions ProcessorOptionsFor(const KafkaConsumerOptions& options) {
    ProcessorOptions out = options.processor;
    if (out.thread == nullptr) out.thread = std::make_shared<ProcessorThread>();
    return out;
  }
  const ProcessorOptions processor_options_;

  mutable std::mutex mu_;  // owned_'s shape and states, for readers on other threads
  std::map<int32_t, std::unique_ptr<OwnedPartition>> owned_;
  double last_restore_seconds_ = 0, max_restore_seconds_ = 0;
};

}  // namespace idem::kafka

#endif  // IDEM_RUNTIME_KAFKA_OWNED_PARTITIONS_H_
