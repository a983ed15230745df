#include "runtime/kafka/partition_batch.h"

#include <map>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"
#include "util/status_util.h"

namespace idem {

// The effects of a batch's earlier events, by column family ID and key (nullopt: deleted).
class KafkaPartitionView::Overlay : public rocksdb::WriteBatch::Handler {
 public:
  void Clear() { values_.clear(); }
  void Add(const rocksdb::WriteBatch& effects) { effects.Iterate(this).PermitUncheckedError(); }
  const std::optional<std::string>* Find(uint32_t family, std::string_view key) const {
    auto it = values_.find(std::make_pair(family, std::string(key)));
    return it == values_.end() ? nullptr : &it->second;
  }
  rocksdb::Status PutCF(uint32_t family, const rocksdb::Slice& key, const rocksdb::Slice& value) override {
    values_[std::make_pair(family, key.ToString())] = value.ToString();
    return rocksdb::Status::OK();
  }
  rocksdb::Status DeleteCF(uint32_t family, const rocksdb::Slice& key) override {
    values_[std::make_pair(family, key.ToString())] = std::nullopt;
    return rocksdb::Status::OK();
  }
  rocksdb::Status SingleDeleteCF(uint32_t family, const rocksdb::Slice& key) override { return DeleteCF(family, key); }

 private:
  std::map<std::pair<uint32_t, std::string>, std::optional<std::string>> values_;
};

rocksdb::ColumnFamilyHandle* KafkaPartitionView::family(size_t index) const { return partition_->family(index); }

absl::StatusOr<std::optional<std::string>> KafkaPartitionView::Get(size_t index, std::string_view key) const {
  rocksdb::ColumnFamilyHandle* cf = partition_->family(index);
  if (cf == nullptr) return absl::InvalidArgumentError(absl::StrCat("partition family ", index, " does not exist"));
  if (const std::optional<std::string>* v = overlay_->Find(cf->GetID(), key)) return *v;
  // Through the partition: the set's DB is held open for the read (another partition's store failure
  // may be reopening it).
  return partition_->Get(index, key);
}

namespace kafka {

PartitionBatch::PartitionBatch(const KafkaConsumerOptions* options, ChangelogProducer* producer,
                               MemberCounters* counters, LatencyHistogram* latency)
    : options_(options),
      producer_(producer),
      counters_(counters),
      latency_(latency),
      overlay_(std::make_unique<KafkaPartitionView::Overlay>()) {}

PartitionBatch::~PartitionBatch() = default;

PartitionBatch::Result PartitionBatch::Handle(OwnedPartition& o, const std::vector<rd_kafka_message_t*>& messages) {
  std::vector<KafkaMessage> kms;
  for (rd_kafka_message_t* m : messages) {
    if (o.next_offset >= 0 && m->offset < o.next_offset) continue;  // read again after a seek
    KafkaMessage km;
    km.partition = m->partition;
    km.offset = m->offset;
    km.key = std::string_view(static_cast<const char*>(m->key), m->key_len);
    km.value = std::string_view(static_cast<const char*>(m->payload), m->len);
    km.native = m;
    kms.push_back(km);
  }
  // Runs of messages with distinct IDs: a producer's retry often sends a copy right behind the
  // original, and the second of two equal IDs in one ReserveBatch would be in flight, not a duplicate.
  Result result;
  size_t begin = 0;
  while (begin < kms.size() && result.stop == Stop::kNone) {
    std::unordered_set<std::string_view> ids;
    std::vector<std::optional<Event>> events;
    size_t end = begin;
    for (; end < kms.size() && end - begin < o.max_run; ++end) {
      std::optional<Event> e = options_->event_of(kms[end]);
      if (e && !ids.insert(e->id).second) break;
      events.push_back(std::move(e));
    }
    result.settled += HandleRun(o, absl::MakeSpan(kms).subspan(begin, end - begin), events, &result.stop);
    result.ran = true;
    begin = end;
  }
  return result;
}

// One ReserveBatch + CommitBatch over messages with distinct IDs; returns how many were settled
// (applied, duplicate or dead-lettered) before the first that must be read again.
size_t PartitionBatch::HandleRun(OwnedPartition& o, absl::Span<const KafkaMessage> kms,
                                 const std::vector<std::optional<Event>>& of, Stop* stop_why) {
  const auto started = Steady::now();
  std::vector<Event> events;
  std::vector<int> event_of(kms.size(), -1);
  std::unordered_map<std::string_view, const KafkaMessage*> by_id;
  for (size_t i = 0; i < kms.size(); ++i) {
    if (!of[i]) continue;
    event_of[i] = static_cast<int>(events.size());
    events.push_back(*of[i]);
    by_id.emplace(of[i]->id, &kms[i]);
  }
  overlay_->Clear();
  // No DB pointer: the view reads through Partition::Get, which pins the set's DB (a raw pointer taken
  // here would race with a reopen).
  KafkaPartitionView view(o.number, o.partition, nullptr, overlay_.get());
  const KafkaHandler& handler = options_->handler;
  std::vector<HandleResult> results;
  if (!events.empty()) {
    // The commit is tagged with the input position the run covers up to: its changelog record says so.
    const int64_t covers = kms.back().offset + 1;
    results = o.processor->HandleBatch(
        events,
        [&](const EventContext& ctx) -> absl::StatusOr<std::string> {
          absl::StatusOr<std::string> result = handler(*by_id.at(ctx.event_id), ctx, view);
          // What a later event of the batch reads: this one's effects, which commit with it in the same
          // write — but only if the commit will take them. An event the commit refuses (its result too
          // large, a write outside the partition's families) is dead-lettered, and no later event may have
          // seen its effects.
          if (result.ok() && ctx.effects != nullptr && o.partition->store().ValidateCommit(*result, ctx.effects).ok()) {
            overlay_->Add(*ctx.effects);
          }
          return result;
        },
        covers);
  }
  size_t stop = kms.size();
  Outcome stop_outcome = Outcome::kApplied;
  for (size_t i = 0; i < kms.size(); ++i) {
    if (event_of[i] < 0) {
      DeadLetter(o, kms[i], "no event ID (idem-id header or key)");
      continue;
    }
    const HandleResult& r = results[event_of[i]];
    if (r.outcome == Outcome::kApplied) {
      counters_->Add(Counter::kApplied);
    } else if (r.outcome == Outcome::kDuplicate) {
      counters_->Add(Counter::kDuplicates);
    } else if (r.DeadLetter()) {
      DeadLetter(o, kms[i], absl::StrCat(util::ToAbsl(OutcomeName(r.outcome)), ": ", r.status.message()));
    } else {
      stop = i;
      stop_outcome = r.outcome;
      break;
    }
  }
  if (stop < kms.size() && stop_outcome == Outcome::kLeaseLost) {
    for (size_t j = stop + 1; j < kms.size(); ++j) {
      if (event_of[j] >= 0 && results[event_of[j]].outcome == Outcome::kApplied) {
        counters_->Add(Counter::kPartialBatches);
        options_->log(absl::StrCat(o.layout.name, ": offset ", kms[stop].offset,
                                   " lost its lease while later events of its batch committed; handlers that read "
                                   "the batch's earlier effects may have counted it"));
        break;
      }
    }
  }
  counters_->Add(Counter::kMessages, stop);
  latency_->Record(static_cast<uint64_t>(std::chrono::nanoseconds(Steady::now() - started).count()));
  o.next_offset = stop < kms.size() ? kms[stop].offset : kms.back().offset + 1;
  if (stop < kms.size()) {
    // Later events of the batch may have committed; they come back as duplicates after the seek.
    if (stop_outcome == Outcome::kUnavailable) {
      counters_->Add(Counter::kUnavailable);
      *stop_why = Stop::kStoreUnavailable;
    } else {
      counters_->Add(Counter::kRetried);
      *stop_why = Stop::kRetry;
    }
  }
  return stop;
}

void PartitionBatch::DeadLetter(OwnedPartition& o, const KafkaMessage& m, const std::string& reason) {
  counters_->Add(Counter::kDeadLetters);
  if (options_->dead_letter_topic.empty()) {
    options_->log(absl::StrCat(o.layout.name, " offset ", m.offset, ": dead letter: ", reason));
    return;
  }
  // The message as it came — key, value and every header (its idem-id among them: replayed after a
  // fix, each dead letter is its own event again) — plus why and where from.
  rd_kafka_headers_t* headers = nullptr;
  rd_kafka_headers_t* original = nullptr;
  auto* native = static_cast<rd_kafka_message_t*>(const_cast<void*>(m.native));
  if (native != nullptr && rd_kafka_message_headers(native, &original) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    headers = rd_kafka_headers_copy(original);
  } else {
    headers = rd_kafka_headers_new(3);
  }
  const std::string source = absl::StrCat(options_->input_topic, "/", m.partition, "@", m.offset);
  rd_kafka_header_add(headers, "idem-dead-letter", -1, reason.data(), static_cast<ssize_t>(reason.size()));
  rd_kafka_header_add(headers, "idem-source", -1, source.data(), static_cast<ssize_t>(source.size()));
  if (absl::Status s = producer_->ProduceWithHeaders(options_->dead_letter_topic, m.key, m.value, headers, o.track,
                                                     RecordKind::kDeadLetter);
      !s.ok()) {
    options_->log(absl::StrCat("DEAD LETTER NOT WRITTEN: ", source, " (", reason, "): ", s.ToString(),
                               "; its offset is committed: replay it from the input topic before its retention ends"));
  }
}

}  // namespace kafka
}  // namespace idem
