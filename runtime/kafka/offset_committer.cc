#include "runtime/kafka/offset_committer.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/kafka/kafka_client.h"

namespace idem::kafka {
namespace {

// The group refused the commit because this member is no longer (or, in this generation, not) the
// owner: what fences a zombie's offsets.
bool RefusedByGroup(rd_kafka_resp_err_t err) {
  return err == RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID || err == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION ||
         err == RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID;
}

}  // namespace

void OffsetCommitter::Forget(OwnedPartition& o) {
  o.pending.clear();
  o.ackable = o.sent = -1;
}

void OffsetCommitter::Commit(const std::vector<OwnedPartition*>& partitions, bool sync) {
  PartitionList list(rd_kafka_topic_partition_list_new(static_cast<int>(partitions.size()) + 1));
  for (OwnedPartition* op : partitions) {
    OwnedPartition& o = *op;
    if (o.state != OwnedPartition::State::kActive) continue;
    while (!o.pending.empty() && o.track->AcknowledgedThrough(o.pending.front().second)) {
      o.ackable = std::max(o.ackable, o.pending.front().first);
      o.pending.pop_front();
    }
    // The pointer committed before stays valid (it and the log after it hold the partition's state)
    // until this member's first snapshot: its commits carry it, so they never erase it.
    const int64_t pointer = o.track->pointer() >= 0 ? o.track->pointer() : o.inherited_pointer.value_or(-1);
    if (o.ackable < 0 || (o.ackable <= o.sent && pointer == o.sent_pointer)) continue;
    rd_kafka_topic_partition_t* tp = rd_kafka_topic_partition_list_add(list.get(), input_topic_.c_str(), o.number);
    tp->offset = o.ackable;
    if (with_changelog_) {
      // The log's end as acknowledged now: a restore that finds the log shorter refuses (kDataLoss).
      CommitMetadata m;
      m.log_end = o.track->acknowledged_end();
      if (pointer >= 0) m.snapshot = pointer;
      const std::string metadata = EncodeCommitMetadata(m);
      tp->metadata = malloc(metadata.size());
      std::memcpy(tp->metadata, metadata.data(), metadata.size());
      tp->metadata_size = metadata.size();
    }
    o.sent = o.ackable;
    o.sent_pointer = pointer;
  }
  if (list->cnt == 0) return;
  const rd_kafka_resp_err_t err = rd_kafka_commit(consumer_, list.get(), sync ? 0 : 1);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR && !sync) {
    Committed(err, list.get(), [&](int32_t number) -> OwnedPartition* {
      for (OwnedPartition* o : partitions) {
        if (o->number == number) return o;
      }
      return nullptr;
    });
  }
}

void OffsetCommitter::Committed(rd_kafka_resp_err_t err, const rd_kafka_topic_partition_list_t* offsets,
                                const std::function<OwnedPartition*(int32_t)>& find) {
  if (offsets == nullptr) return;
  std::vector<int32_t> refused;
  std::string why;
  for (int i = 0; i < offsets->cnt; ++i) {
    const rd_kafka_topic_partition_t& tp = offsets->elems[i];
    const rd_kafka_resp_err_t e = tp.err != RD_KAFKA_RESP_ERR_NO_ERROR ? tp.err : err;
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
      counters_->Add(Counter::kOffsetCommits);
      continue;
    }
    if (e == RD_KAFKA_RESP_ERR__NO_OFFSET) continue;
    if (OwnedPartition* o = find(tp.partition)) o->sent = -1;  // send again
    if (RefusedByGroup(e)) {
      counters_->Add(Counter::kOffsetCommitsRefused);
      refused.push_back(tp.partition);
      why = rd_kafka_err2name(e);
    } else {
      counters_->Add(Counter::kOffsetCommitErrors);
      log_(absl::StrCat("offset commit of partition ", tp.partition, " failed: ", rd_kafka_err2str(e)));
    }
  }
  if (!refused.empty()) {
    log_(absl::StrCat("offset commit refused by the group (", why, ") for [", absl::StrJoin(refused, " "),
                      "]: this member's generation is over (replaced, or a rebalance moved on); "
                      "its changelog batches after a newer claim are ignored by every replay"));
  }
}

}  // namespace idem::kafka
