// The offset committer: an owned partition's input offsets, committed to the group only once every
// changelog record of the events before them is acknowledged, with what a restore needs beside them
// (CommitMetadata: the log's acknowledged end and the snapshot pointer); and what the group answers
// (accepted, refused because this member was replaced, failed and sent again).
#ifndef IDEM_RUNTIME_KAFKA_OFFSET_COMMITTER_H_
#define IDEM_RUNTIME_KAFKA_OFFSET_COMMITTER_H_

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <librdkafka/rdkafka.h>

#include "runtime/kafka/member_counters.h"
#include "runtime/kafka/owned_partition.h"

namespace idem::kafka {

// Used on the member's thread (librdkafka's commit callback runs there too, inside its poll).
class OffsetCommitter {
 public:
  OffsetCommitter(std::string input_topic, bool with_changelog, MemberCounters* counters,
                  std::function<void(std::string_view)> log)
      : input_topic_(std::move(input_topic)),
        with_changelog_(with_changelog),
        counters_(counters),
        log_(std::move(log)) {}

  void set_consumer(rd_kafka_t* consumer) { consumer_ = consumer; }
  // Events of `o` were settled up to `next_offset` (exclusive), their records issued up to now.
  static void Handled(OwnedPartition& o) { o.pending.emplace_back(o.next_offset, o.track->last_issued()); }
  // Forgets what was pending (the partition is rebuilt: those offsets are handled again).
  static void Forget(OwnedPartition& o);
  // Commits the acknowledged progress of each active partition of `partitions` that moved.
  void Commit(const std::vector<OwnedPartition*>& partitions, bool sync);
  // The group's answer; `find` gives the owned partition of a number (null: no longer owned).
  void Committed(rd_kafka_resp_err_t err, const rd_kafka_topic_partition_list_t* offsets,
                 const std::function<OwnedPartition*(int32_t)>& find);

 private:
  const std::string input_topic_;
  const bool with_changelog_;
  MemberCounters* const counters_;
  const std::function<void(std::string_view)> log_;
  rd_kafka_t* consumer_ = nullptr;
};

}  // namespace idem::kafka

#endif  // IDEM_RUNTIME_KAFKA_OFFSET_COMMITTER_H_
