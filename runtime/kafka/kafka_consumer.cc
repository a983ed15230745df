// The consumer loop of idem/kafka.h: rebalances, the exactly-once step per partition batch, the
// changelog records of each commit, offsets committed behind acknowledged records, snapshots, pauses.
// The protocol and why it is safe: docs/SCALING.md.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/types/span.h"
#include "idem/kafka.h"
#include "idem/latency_histogram.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"
#include "runtime/kafka/changelog_producer.h"
#include "runtime/kafka/kafka_client.h"
#include "runtime/kafka/partition_restorer.h"
#include "util/status_util.h"

namespace idem {

using kafka::ChangelogProducer;
using kafka::Message;
using kafka::PartitionList;
using kafka::RecordKind;
using kafka::RecordTrack;
using kafka::RestoreJob;
using Steady = std::chrono::steady_clock;

namespace {

// The group refused the commit because this member is no longer (or, in this generation, not) the
// owner: what fences a zombie's offsets.
bool RefusedByGroup(rd_kafka_resp_err_t err) {
  return err == RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID || err == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION ||
         err == RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID;
}

RecordKind KindOf(ChangelogRecord::Type type) {
  switch (type) {
    case ChangelogRecord::Type::kClaim: return RecordKind::kClaim;
    case ChangelogRecord::Type::kBatch: return RecordKind::kBatch;
    case ChangelogRecord::Type::kSnapshotBegin: return RecordKind::kSnapshotBegin;
    case ChangelogRecord::Type::kSnapshotChunk: return RecordKind::kSnapshotChunk;
    case ChangelogRecord::Type::kSnapshotEnd: return RecordKind::kSnapshotEnd;
  }
  return RecordKind::kBatch;
}

double SecondsSince(Steady::time_point t) { return std::chrono::duration<double>(Steady::now() - t).count(); }

}  // namespace

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

// One input partition this member was assigned.
struct OwnedPartition {
  enum class State { kRestoring, kActive, kStopped };
  enum class Pause { kNone, kStore, kRetry };

  int32_t number = -1;
  PartitionLayout layout;
  State state = State::kRestoring;
  std::shared_ptr<RestoreJob> job;  // null while waiting to (re)start the restore
  Steady::time_point restart_at;
  absl::Duration restart_backoff = absl::Milliseconds(200);
  std::shared_ptr<RecordTrack> track = std::make_shared<RecordTrack>();
  Partition* partition = nullptr;
  std::unique_ptr<Processor> processor;
  ClaimId claim;
  int64_t claim_offset = -1;
  std::optional<int64_t> inherited_pointer;  // the pointer committed before this member's claim
  int64_t next_offset = -1;                  // the next input offset to handle (-1: the first one that comes)
  size_t max_run = SIZE_MAX;                 // events per commit, halved when a record was too large
  // (offset to commit, last changelog record it waits for), oldest first.
  std::deque<std::pair<int64_t, uint64_t>> pending;
  int64_t ackable = -1;  // the highest offset whose records are all acknowledged
  int64_t sent = -1;     // the offset last sent in a commit
  int64_t sent_pointer = -1;
  Pause pause = Pause::kNone;
  Steady::time_point resume_at;
  std::atomic<int64_t> batch_end{-1};  // the input offset the batch being committed covers up to
  uint64_t bytes_at_snapshot = 0;      // track->bytes_issued() at the last snapshot
  uint64_t last_snapshot_bytes = 0;
  uint64_t restore_debt = 0;  // log bytes a restore from the pointer reads that this member did not write
  Steady::time_point assigned_at = Steady::now();
};

class KafkaConsumer::Impl {
 public:
  Impl(KafkaConsumerOptions options, PartitionSet* set) : options_(std::move(options)), set_(set) {
    if (!options_.log) {
      const std::string who = options_.group_id;
      options_.log = [who](std::string_view line) {
        std::fprintf(stderr, "idem kafka [%s]: %.*s\n", who.c_str(), static_cast<int>(line.size()), line.data());
      };
    }
  }
  ~Impl() { Close().IgnoreError(); }

  absl::Status Start() {
    kafka::Settings settings = {
        {"bootstrap.servers", options_.bootstrap_servers},
        {"group.id", options_.group_id},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"auto.offset.reset", "earliest"},
        {"partition.assignment.strategy", "cooperative-sticky"},
        {"reconnect.backoff.max.ms", "1000"},
        {"statistics.interval.ms", "100"},
    };
    settings.insert(settings.end(), options_.consumer_config.begin(), options_.consumer_config.end());
    for (const auto& [k, v] : settings) {
      if (k == "auto.offset.reset") reset_earliest_ = v == "earliest" || v == "smallest" || v == "beginning";
    }
    absl::StatusOr<kafka::Conf> conf = kafka::MakeConf(settings);
    if (!conf.ok()) return conf.status();
    rd_kafka_conf_set_opaque(conf->get(), this);
    rd_kafka_conf_set_rebalance_cb(conf->get(), &Impl::OnRebalance);
    rd_kafka_conf_set_offset_commit_cb(conf->get(), &Impl::OnCommitted);
    rd_kafka_conf_set_error_cb(conf->get(), &Impl::OnError);
    // The group's join state, from librdkafka's statistics: 2.0.2 takes a commit refused during a
    // cooperative rebalance (ILLEGAL_GENERATION) for a lost assignment (its bug #4059, fixed in 2.10),
    // so periodic commits wait while the member is not in the steady state.
    rd_kafka_conf_set_stats_cb(conf->get(), &Impl::OnStatistics);
    absl::StatusOr<kafka::Client> consumer = kafka::MakeClient(RD_KAFKA_CONSUMER, *std::move(conf));
    if (!consumer.ok()) return consumer.status();
    consumer_ = *std::move(consumer);
    rd_kafka_poll_set_consumer(consumer_.get());

    absl::StatusOr<std::unique_ptr<ChangelogProducer>> producer =
        ChangelogProducer::Create(options_.bootstrap_servers, options_.producer_config, options_.log);
    if (!producer.ok()) return producer.status();
    producer_ = *std::move(producer);

    const int timeout = static_cast<int>(absl::ToInt64Milliseconds(options_.restore_timeout));
    absl::StatusOr<int> inputs = kafka::PartitionCount(producer_->client(), options_.input_topic, timeout);
    if (!inputs.ok()) return inputs.status();
    if (!options_.changelog_topic.empty()) {
      absl::StatusOr<int> changelogs = kafka::PartitionCount(producer_->client(), options_.changelog_topic, timeout);
      if (!changelogs.ok()) return changelogs.status();
      if (*changelogs != *inputs) {
        return absl::FailedPreconditionError(absl::StrCat("changelog topic ", options_.changelog_topic, " has ",
                                                          *changelogs, " partitions; input topic ",
                                                          options_.input_topic, " has ", *inputs));
      }
    }
    kafka::PartitionRestorer::Config rc;
    rc.bootstrap_servers = options_.bootstrap_servers;
    rc.input_topic = options_.input_topic;
    rc.changelog_topic = options_.changelog_topic;
    rc.timeout = options_.restore_timeout;
    for (const auto& [k, v] : options_.consumer_config) {
      if (k.rfind("security.", 0) == 0 || k.rfind("sasl.", 0) == 0 || k.rfind("ssl.", 0) == 0) {
        rc.reader_settings.emplace_back(k, v);
      }
    }
    absl::StatusOr<std::unique_ptr<kafka::PartitionRestorer>> restorer =
        kafka::PartitionRestorer::Create(rc, set_, consumer_.get(), producer_.get(), options_.log);
    if (!restorer.ok()) return restorer.status();
    restorer_ = *std::move(restorer);

    PartitionList topics(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(topics.get(), options_.input_topic.c_str(), RD_KAFKA_PARTITION_UA);
    if (rd_kafka_resp_err_t err = rd_kafka_subscribe(consumer_.get(), topics.get());
        err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return kafka::KafkaError(err, "subscribing");
    }
    return absl::OkStatus();
  }

  absl::StatusOr<size_t> Poll() {
    if (closed_) return absl::FailedPreconditionError("the Kafka consumer is closed");
    char fatal[256];
    if (rd_kafka_resp_err_t err = rd_kafka_fatal_error(consumer_.get(), fatal, sizeof fatal); err) {
      return absl::UnavailableError(absl::StrCat("fatal Kafka consumer error: ", fatal));
    }
    // An idempotent producer's fatal error (e.g. its sequence broken by the broker) ends every later
    // produce: the member cannot replicate, so it must not consume. Close and create it again.
    if (rd_kafka_resp_err_t err = rd_kafka_fatal_error(producer_->client(), fatal, sizeof fatal); err) {
      return absl::UnavailableError(absl::StrCat("fatal changelog producer error: ", fatal));
    }
    AdvanceRestores();
    CheckPartitions();
    waiting_ = false;
    for (const auto& [number, o] : owned_) {
      if (o->state == State::kRestoring || o->pause == Pause::kRetry) waiting_ = true;
    }

    std::vector<Message> batch;
    // While a partition waits for its restore (or a pause to end), poll briefly: resuming it is this
    // loop's job, and a long poll would hold it back.
    int timeout = static_cast<int>(absl::ToInt64Milliseconds(options_.poll_timeout));
    if (waiting_) timeout = std::min(timeout, 5);
    Message m(rd_kafka_consumer_poll(consumer_.get(), timeout));
    while (m != nullptr) {
      if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        batch.push_back(std::move(m));
        if (batch.size() >= options_.max_batch) break;
      } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        options_.log(absl::StrCat("consumer: ", rd_kafka_message_errstr(m.get())));
      }
      m.reset(rd_kafka_consumer_poll(consumer_.get(), 0));
    }
    // By partition, each in offset order (the order they came in).
    std::map<int32_t, std::vector<rd_kafka_message_t*>> by_partition;
    for (const Message& message : batch) by_partition[message->partition].push_back(message.get());
    size_t handled = 0;
    for (auto& [number, messages] : by_partition) handled += HandlePartition(number, messages);
    MaybeSnapshot();
    if (Steady::now() >= next_commit_ && steady_.load(std::memory_order_relaxed)) {
      CommitProgress(nullptr, /*sync=*/false);
      next_commit_ = Steady::now() + absl::ToChronoMilliseconds(options_.commit_interval);
    }
    return handled;
  }

  absl::Status Close() {
    if (closed_) return absl::OkStatus();
    closed_ = true;
    absl::Status status;
    if (consumer_ != nullptr) {
      // The revocation callback runs inside: every partition committed and deactivated.
      if (rd_kafka_resp_err_t err = rd_kafka_consumer_close(consumer_.get()); err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        status = kafka::KafkaError(err, "closing the consumer");
      }
    }
    std::vector<int32_t> left;
    for (const auto& [number, o] : owned_) left.push_back(number);
    for (int32_t number : left) Stop(number, /*lost=*/false);
    restorer_.reset();
    if (producer_ != nullptr) {
      producer_->Flush(absl::Seconds(5)).IgnoreError();
      std::lock_guard<std::mutex> lock(mu_);
      changelog_records_closed_ = producer_->records();
      changelog_bytes_closed_ = producer_->bytes();
      dead_letter_failures_closed_ = producer_->dead_letter_failures();
      producer_.reset();
    }
    consumer_.reset();
    return status;
  }

  std::vector<int32_t> ActivePartitions() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<int32_t> out;
    for (const auto& [number, o] : owned_) {
      if (o->state == OwnedPartition::State::kActive) out.push_back(number);
    }
    return out;
  }

  KafkaConsumerStats GetStats() const {
    KafkaConsumerStats s;
    s.messages = messages_;
    s.applied = applied_;
    s.duplicates = duplicates_;
    s.retried = retried_;
    s.dead_letters = dead_letters_;
    s.dead_letter_failures = dead_letter_failures_closed_;
    s.unavailable = unavailable_;
    s.offset_commits = offset_commits_;
    s.offset_commits_refused = offset_commits_refused_;
    s.offset_commit_errors = offset_commit_errors_;
    s.changelog_failures = changelog_failures_;
    s.snapshots = snapshots_;
    s.assignments = assignments_;
    s.revocations = revocations_;
    s.lost = lost_;
    s.restores = restores_;
    s.catch_ups = catch_ups_;
    s.claims = claims_;
    s.claims_lost = claims_lost_;
    s.restore_failures = restore_failures_;
    s.restored_batches_fenced = restored_batches_fenced_;
    s.restored_batches_after_gap = restored_batches_after_gap_;
    s.data_loss_partitions = data_loss_partitions_;
    s.store_pauses = store_pauses_;
    s.partial_batches = partial_batches_;
    s.restarts = restarts_;
    s.step_latency = step_latency_.Summary();
    s.fenced = set_->GetStats().fenced;
    {
      std::lock_guard<std::mutex> lock(mu_);
      s.last_restore_seconds = last_restore_seconds_;
      s.max_restore_seconds = max_restore_seconds_;
      for (const auto& [number, o] : owned_) {
        if (o->state == OwnedPartition::State::kActive) ++s.active_partitions;
        if (o->state != OwnedPartition::State::kActive || o->pause != OwnedPartition::Pause::kNone) {
          ++s.paused_partitions;
        }
      }
      s.changelog_records = changelog_records_closed_;
      s.changelog_bytes = changelog_bytes_closed_;
      if (producer_ != nullptr) {
        s.changelog_records = producer_->records();
        s.changelog_bytes = producer_->bytes();
        s.dead_letter_failures = producer_->dead_letter_failures();
      }
    }
    return s;
  }

  std::string ToPrometheus() const { return GetStats().ToPrometheus() + set_->ToPrometheus(); }

 private:
  using State = OwnedPartition::State;
  using Pause = OwnedPartition::Pause;

  static void OnRebalance(rd_kafka_t*, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions,
                          void* opaque) {
    static_cast<Impl*>(opaque)->Rebalance(err, partitions);
  }
  static void OnCommitted(rd_kafka_t*, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* offsets,
                          void* opaque) {
    static_cast<Impl*>(opaque)->Committed(err, offsets);
  }
  static int OnStatistics(rd_kafka_t*, char* json, size_t json_len, void* opaque) {
    // ... "cgrp": { "state": "up", "stateage": 97, "join_state": "steady", ...
    const std::string_view stats(json, json_len);
    constexpr std::string_view kKey = "\"join_state\": \"";
    const size_t at = stats.find(kKey);
    if (at != std::string_view::npos) {
      const bool steady = stats.substr(at + kKey.size(), 7) == "steady\"";
      static_cast<Impl*>(opaque)->steady_.store(steady, std::memory_order_relaxed);
    }
    return 0;  // librdkafka frees the JSON
  }
  static void OnError(rd_kafka_t*, int err, const char* reason, void* opaque) {
    static_cast<Impl*>(opaque)->options_.log(
        absl::StrCat("client error: ", rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(err)), ": ", reason));
  }

  bool Cooperative() const { return std::string_view(rd_kafka_rebalance_protocol(consumer_.get())) == "COOPERATIVE"; }

  void Rebalance(rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions) {
    std::vector<int32_t> numbers;
    for (int i = 0; i < partitions->cnt; ++i) numbers.push_back(partitions->elems[i].partition);
    const bool cooperative = Cooperative();
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      options_.log(absl::StrCat("assigned [", absl::StrJoin(numbers, " "), "]"));
      if (cooperative) {
        if (rd_kafka_error_t* e = rd_kafka_incremental_assign(consumer_.get(), partitions)) {
          options_.log(absl::StrCat("incremental assign: ", rd_kafka_error_string(e)));
          rd_kafka_error_destroy(e);
        }
      } else {
        rd_kafka_assign(consumer_.get(), partitions);
      }
      // Paused until restored and claimed: nothing is handled before the partition's state is here.
      rd_kafka_pause_partitions(consumer_.get(), partitions);
      for (int32_t number : numbers) Assign(number);
      return;
    }
    const bool lost = rd_kafka_assignment_lost(consumer_.get()) != 0;
    options_.log(absl::StrCat(lost ? "lost" : "revoked", " [", absl::StrJoin(numbers, " "), "]"));
    for (int32_t number : numbers) Stop(number, lost);
    if (cooperative) {
      if (rd_kafka_error_t* e = rd_kafka_incremental_unassign(consumer_.get(), partitions)) {
        options_.log(absl::StrCat("incremental unassign: ", rd_kafka_error_string(e)));
        rd_kafka_error_destroy(e);
      }
    } else {
      rd_kafka_assign(consumer_.get(), nullptr);
    }
  }

  void Assign(int32_t number) {
    if (owned_.count(number) != 0) return;
    auto o = std::make_unique<OwnedPartition>();
    o->number = number;
    o->layout = PartitionLayout{absl::StrCat(options_.input_topic, "/", number), options_.effect_families};
    ++assignments_;
    StartRestore(*o);
    std::lock_guard<std::mutex> lock(mu_);
    owned_[number] = std::move(o);
  }

  void StartRestore(OwnedPartition& o) {
    o.job = std::make_shared<RestoreJob>();
    o.job->partition = o.number;
    o.job->layout = o.layout;
    o.job->track = o.track;
    restorer_->Submit(o.job);
  }

  // Ends this member's hold of a partition: revoked (lost: the group gave it away already).
  void Stop(int32_t number, bool lost) {
    auto it = owned_.find(number);
    if (it == owned_.end()) return;
    OwnedPartition& o = *it->second;
    ++(lost ? lost_ : revocations_);
    if (o.job != nullptr && !o.job->done) {
      o.job->cancel = true;
      restorer_->Await(*o.job);
    }
    if (o.state == State::kRestoring && o.job != nullptr && o.job->done && o.job->status.ok()) {
      // Restored and claimed before the revocation came: kept as a clean copy under that claim (the
      // last in the log), so that a member it comes back to catches up instead of restoring.
      std::shared_ptr<RestoreJob> job = std::move(o.job);
      Activate(o, *job, /*resume=*/false);
    }
    if (o.state == State::kActive) {
      // Every record of the handled events in the log, then (unless the group gave the partition away)
      // their offsets committed, then the store closed.
      if (producer_ != nullptr) producer_->Flush(absl::Seconds(lost ? 1 : 5)).IgnoreError();
      if (!lost && options_.commit_on_revoke) CommitProgress(&o, /*sync=*/true);
      o.processor.reset();
      const bool clean = !o.track->failed() && o.track->AllAcknowledged() && !options_.changelog_topic.empty();
      if (absl::Status s =
              set_->Deactivate(o.layout.name, clean ? KeepLocalCopy::kKeep : KeepLocalCopy::kDrop, o.claim_offset);
          !s.ok()) {
        options_.log(absl::StrCat(o.layout.name, ": deactivating: ", s.ToString()));
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    owned_.erase(it);
  }

  void AdvanceRestores() {
    for (auto& [number, op] : owned_) {
      OwnedPartition& o = *op;
      if (o.state != State::kRestoring) continue;
      if (o.job == nullptr) {
        if (Steady::now() >= o.restart_at) StartRestore(o);
        continue;
      }
      if (!o.job->done) continue;
      std::shared_ptr<RestoreJob> job = std::move(o.job);
      restored_batches_fenced_ += job->batches_fenced;
      restored_batches_after_gap_ += job->batches_after_gap;
      if (job->status.ok()) {
        Activate(o, *job);
        continue;
      }
      if (job->claim_lost) ++claims_lost_;
      if (job->status.code() == absl::StatusCode::kDataLoss) {
        ++data_loss_partitions_;
        SetState(o, State::kStopped);
        options_.log(absl::StrCat(o.layout.name, ": NOT RESTORED, stays paused: ", job->status.ToString(),
                                  ". Its changelog no longer holds its state; an operator must decide "
                                  "(restore a backup, or accept starting it empty by deleting the group's "
                                  "offset metadata and the changelog)."));
        continue;
      }
      ++restore_failures_;
      options_.log(absl::StrCat(o.layout.name, ": restore failed (", job->status.ToString(), "); retrying in ",
                                absl::FormatDuration(o.restart_backoff)));
      o.restart_at = Steady::now() + absl::ToChronoMilliseconds(o.restart_backoff);
      o.restart_backoff = std::min(o.restart_backoff * 2, absl::Seconds(10));
    }
  }

  // `resume`: false when the partition is being revoked (activated only to be kept with its claim).
  void Activate(OwnedPartition& o, const RestoreJob& job, bool resume = true) {
    // The claim's tokens: above every earlier owner's, below every later one's. Past the last claim
    // there can be, the partition stays paused rather than issue tokens that stop growing.
    absl::StatusOr<TokenRange> tokens = TokenRangeOfClaim(job.claim.ordinal);
    if (!tokens.ok()) {
      SetState(o, State::kStopped);
      options_.log(absl::StrCat(o.layout.name, ": NOT ACTIVATED, stays paused: ", tokens.status().ToString()));
      return;
    }
    ActivateOptions a;
    a.claim = job.claim;
    a.token_floor = tokens->floor;
    a.token_limit = tokens->limit;
    a.use_local_copy = true;
    if (!options_.changelog_topic.empty()) {
      OwnedPartition* op = &o;
      // Hooks run one at a time, in WAL order: `previous` orders this claim's batches in the log, so a
      // replay never counts a batch whose predecessor is missing.
      auto previous = std::make_shared<uint64_t>(0);
      std::shared_ptr<RecordTrack> track = o.track;
      a.commit_hook = [this, op, track, previous, claim = job.claim](const PartitionCommit& commit) {
        // Once a record of the partition failed, nothing more is produced for it: later records would
        // build on the missing one. The partition is stopped and rebuilt from the log (CheckPartitions).
        if (track->failed()) return;
        ChangelogRecord record;
        record.type = ChangelogRecord::Type::kBatch;
        record.claim = claim;
        record.sequence = commit.sequence;
        record.previous_sequence = *previous;
        record.input_offset = op->batch_end.load(std::memory_order_relaxed);
        record.ops = *commit.ops;
        *previous = commit.sequence;
        // A record not enqueued marks the track failed: the partition is then stopped and restored.
        if (absl::Status s = producer_->Produce(options_.changelog_topic, op->number, EncodeChangelogRecord(record),
                                                track, RecordKind::kBatch);
            !s.ok()) {
          options_.log(absl::StrCat(op->layout.name, ": changelog record not sent: ", s.ToString()));
        }
      };
    }
    absl::StatusOr<Partition*> p = set_->Activate(o.layout, a);
    if (!p.ok()) {
      ++restore_failures_;
      options_.log(absl::StrCat(o.layout.name, ": activating: ", p.status().ToString()));
      o.restart_at = Steady::now() + absl::ToChronoMilliseconds(o.restart_backoff);
      return;
    }
    o.partition = *p;
    o.processor = std::make_unique<Processor>(&o.partition->store(), options_.processor);
    o.claim = job.claim;
    o.claim_offset = job.claim_offset;
    // The pointer committed before stays valid (it and the log after it hold this partition's state)
    // until this member's first snapshot: its commits carry it, so they never erase it.
    o.inherited_pointer = job.pointer;
    o.restore_debt = job.log_bytes;
    o.bytes_at_snapshot = o.track->bytes_issued();
    o.restart_backoff = absl::Milliseconds(200);
    if (job.caught_up) {
      ++catch_ups_;
    } else {
      ++restores_;
    }
    if (!options_.changelog_topic.empty()) ++claims_;
    // Processing resumes where the group's committed offset says.
    o.next_offset = job.committed >= 0 ? job.committed : -1;
    const int64_t seek = job.committed >= 0 ? job.committed : (reset_earliest_ ? RD_KAFKA_OFFSET_BEGINNING : -1);
    if (resume) Resume(o, seek);
    const double seconds = SecondsSince(o.assigned_at);
    {
      std::lock_guard<std::mutex> lock(mu_);
      o.state = State::kActive;
      last_restore_seconds_ = seconds;
      max_restore_seconds_ = std::max(max_restore_seconds_, seconds);
    }
    options_.log(absl::StrCat(o.layout.name, ": resumed at offset ", job.committed, " under claim ", job.claim.ordinal,
                              " (", job.how, ") ", absl::StrFormat("%.3f", seconds), " s after assignment",
                              job.batches_fenced > 0 ? absl::StrCat("; ", job.batches_fenced,
                                                                    " changelog batches of superseded owners ignored")
                                                     : ""));
  }

  void SetState(OwnedPartition& o, State state) {
    std::lock_guard<std::mutex> lock(mu_);
    o.state = state;
  }

  void PausePartition(OwnedPartition& o, Pause why) {
    PartitionList list = kafka::OnePartition(options_.input_topic, o.number, RD_KAFKA_OFFSET_INVALID);
    rd_kafka_pause_partitions(consumer_.get(), list.get());
    std::lock_guard<std::mutex> lock(mu_);
    o.pause = why;
  }

  // Seeks (when `offset` names one) and resumes fetching the partition.
  void Resume(OwnedPartition& o, int64_t offset) {
    if (offset >= 0 || offset == RD_KAFKA_OFFSET_BEGINNING) {
      PartitionList list = kafka::OnePartition(options_.input_topic, o.number, offset);
      if (rd_kafka_error_t* e = rd_kafka_seek_partitions(consumer_.get(), list.get(), 5000)) {
        options_.log(absl::StrCat(o.layout.name, ": seek to ", offset, ": ", rd_kafka_error_string(e)));
        rd_kafka_error_destroy(e);
      }
    }
    PartitionList list = kafka::OnePartition(options_.input_topic, o.number, RD_KAFKA_OFFSET_INVALID);
    rd_kafka_resume_partitions(consumer_.get(), list.get());
    std::lock_guard<std::mutex> lock(mu_);
    o.pause = Pause::kNone;
  }

  // Resumes partitions whose store recovered or whose retry is due; stops those whose changelog failed.
  void CheckPartitions() {
    for (auto& [number, op] : owned_) {
      OwnedPartition& o = *op;
      if (o.state != State::kActive) continue;
      if (o.track->failed()) {
        ++changelog_failures_;
        if (o.track->too_large()) {
          // One commit's record must be one message: its events come back in runs half as long.
          o.max_run = std::max<size_t>(1, std::min(o.max_run, options_.max_batch) / 2);
          options_.log(absl::StrCat(o.layout.name,
                                    ": a batch's changelog record was larger than the producer's message.max.bytes; "
                                    "runs of at most ",
                                    o.max_run, " events from now (raise message.max.bytes, or lower max_batch)"));
        }
        Restart(o, "a changelog record was not acknowledged");
        continue;
      }
      if (o.pause == Pause::kStore && o.processor->healthy()) {
        // The failed write's outcome is unknown: it may have landed here without its changelog record
        // (the hook runs only for writes that returned OK), and later commits would build on it. The
        // local state is not trusted past it: the partition is rebuilt from its changelog.
        Restart(o, "the store recovered from a failed write whose outcome is unknown");
      } else if (o.pause == Pause::kRetry && Steady::now() >= o.resume_at) {
        Resume(o, o.next_offset);
      }
    }
  }

  // Stops an active partition, drops its local copy and restores it from its changelog (the events
  // since the group's committed offset come back).
  void Restart(OwnedPartition& o, std::string_view why) {
    options_.log(absl::StrCat(o.layout.name, ": ", util::ToAbsl(why),
                              "; the partition stops, drops its local copy and is restored from its changelog"));
    if (o.pause == Pause::kNone) PausePartition(o, Pause::kRetry);
    o.processor.reset();
    set_->Deactivate(o.layout.name, KeepLocalCopy::kDrop).IgnoreError();
    o.pending.clear();
    o.ackable = o.sent = -1;
    o.track = std::make_shared<RecordTrack>();
    o.restart_at = Steady::now() + absl::ToChronoMilliseconds(o.restart_backoff);
    o.assigned_at = Steady::now();
    ++restarts_;
    SetState(o, State::kRestoring);
  }

  size_t HandlePartition(int32_t number, const std::vector<rd_kafka_message_t*>& messages) {
    auto it = owned_.find(number);
    if (it == owned_.end()) return 0;
    OwnedPartition& o = *it->second;
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
    size_t handled = 0;
    size_t begin = 0;
    while (begin < kms.size()) {
      if (o.state != State::kActive || o.pause != Pause::kNone) break;
      std::unordered_set<std::string_view> ids;
      std::vector<std::optional<Event>> events;
      size_t end = begin;
      for (; end < kms.size() && end - begin < o.max_run; ++end) {
        std::optional<Event> e = options_.event_of(kms[end]);
        if (e && !ids.insert(e->id).second) break;
        events.push_back(std::move(e));
      }
      const size_t done = HandleRun(o, absl::MakeSpan(kms).subspan(begin, end - begin), events);
      handled += done;
      if (done < end - begin) break;
      begin = end;
    }
    return handled;
  }

  // One ReserveBatch + CommitBatch over messages with distinct IDs; returns how many were settled
  // (applied, duplicate or dead-lettered) before the first that must be read again.
  size_t HandleRun(OwnedPartition& o, absl::Span<const KafkaMessage> kms, const std::vector<std::optional<Event>>& of) {
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
    o.batch_end.store(kms.back().offset + 1, std::memory_order_relaxed);
    overlay_.Clear();
    KafkaPartitionView view(o.number, o.partition, set_->db(), &overlay_);
    const KafkaHandler& handler = options_.handler;
    std::vector<HandleResult> results;
    if (!events.empty()) {
      results = o.processor->HandleBatch(events, [&](const EventContext& ctx) -> absl::StatusOr<std::string> {
        absl::StatusOr<std::string> result = handler(*by_id.at(ctx.event_id), ctx, view);
        // What a later event of the batch reads: this one's effects, which commit with it in the same
        // write — but only if the commit will take them. An event the commit refuses (its result too
        // large, a write outside the partition's families) is dead-lettered, and no later event may have
        // seen its effects.
        if (result.ok() && ctx.effects != nullptr && o.partition->store().ValidateCommit(*result, ctx.effects).ok()) {
          overlay_.Add(*ctx.effects);
        }
        return result;
      });
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
        ++applied_;
      } else if (r.outcome == Outcome::kDuplicate) {
        ++duplicates_;
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
          ++partial_batches_;
          options_.log(absl::StrCat(o.layout.name, ": offset ", kms[stop].offset,
                                    " lost its lease while later events of its batch committed; handlers that read "
                                    "the batch's earlier effects may have counted it"));
          break;
        }
      }
    }
    messages_ += stop;
    step_latency_.Record(static_cast<uint64_t>(std::chrono::nanoseconds(Steady::now() - started).count()));
    o.next_offset = stop < kms.size() ? kms[stop].offset : kms.back().offset + 1;
    o.pending.emplace_back(o.next_offset, o.track->last_issued());
    if (stop < kms.size()) {
      // Later events of the batch may have committed; they come back as duplicates after the seek.
      if (stop_outcome == Outcome::kUnavailable) {
        ++unavailable_;
        ++store_pauses_;
        options_.log(absl::StrCat(o.layout.name, ": store unavailable at offset ", o.next_offset,
                                  "; partition paused until it recovers"));
        PausePartition(o, Pause::kStore);
      } else {
        ++retried_;
        o.resume_at = Steady::now() + absl::ToChronoMilliseconds(options_.retry_pause);
        PausePartition(o, Pause::kRetry);
      }
    }
    return stop;
  }

  void DeadLetter(OwnedPartition& o, const KafkaMessage& m, const std::string& reason) {
    ++dead_letters_;
    if (options_.dead_letter_topic.empty()) {
      options_.log(absl::StrCat(o.layout.name, " offset ", m.offset, ": dead letter: ", reason));
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
    const std::string source = absl::StrCat(options_.input_topic, "/", m.partition, "@", m.offset);
    rd_kafka_header_add(headers, "idem-dead-letter", -1, reason.data(), static_cast<ssize_t>(reason.size()));
    rd_kafka_header_add(headers, "idem-source", -1, source.data(), static_cast<ssize_t>(source.size()));
    if (absl::Status s = producer_->ProduceWithHeaders(options_.dead_letter_topic, m.key, m.value, headers, o.track,
                                                       RecordKind::kDeadLetter);
        !s.ok()) {
      options_.log(absl::StrCat("DEAD LETTER NOT WRITTEN: ", source, " (", reason, "): ", s.ToString(),
                                "; its offset is committed: replay it from the input topic before its retention ends"));
    }
  }

  void MaybeSnapshot() {
    if (options_.changelog_topic.empty()) return;
    for (auto& [number, op] : owned_) {
      OwnedPartition& o = *op;
      if (o.state != State::kActive || o.track->failed()) continue;
      const uint64_t since = o.track->bytes_issued() - o.bytes_at_snapshot + o.restore_debt;
      if (since < std::max<uint64_t>(options_.snapshot_min_bytes, o.last_snapshot_bytes)) continue;
      const uint64_t before = o.track->bytes_issued();
      const absl::Status s = o.partition->WriteSnapshot(
          o.claim, o.next_offset, options_.snapshot_chunk_bytes, [&](const ChangelogRecord& r) {
            return producer_->Produce(options_.changelog_topic, o.number, EncodeChangelogRecord(r), o.track,
                                      KindOf(r.type));
          });
      if (!s.ok()) {
        options_.log(absl::StrCat(o.layout.name, ": snapshot: ", s.ToString()));
        continue;
      }
      ++snapshots_;
      o.last_snapshot_bytes = o.track->bytes_issued() - before;
      o.bytes_at_snapshot = o.track->bytes_issued();
      o.restore_debt = 0;
    }
  }

  // Commits every active partition's acknowledged progress (or only `only`'s), with its snapshot pointer.
  void CommitProgress(OwnedPartition* only, bool sync) {
    PartitionList list(rd_kafka_topic_partition_list_new(static_cast<int>(owned_.size()) + 1));
    auto add = [&](OwnedPartition& o) {
      if (o.state != State::kActive) return;
      while (!o.pending.empty() && o.track->AcknowledgedThrough(o.pending.front().second)) {
        o.ackable = std::max(o.ackable, o.pending.front().first);
        o.pending.pop_front();
      }
      const int64_t pointer = o.track->pointer() >= 0 ? o.track->pointer() : o.inherited_pointer.value_or(-1);
      if (o.ackable < 0 || (o.ackable <= o.sent && pointer == o.sent_pointer)) return;
      rd_kafka_topic_partition_t* tp =
          rd_kafka_topic_partition_list_add(list.get(), options_.input_topic.c_str(), o.number);
      tp->offset = o.ackable;
      if (!options_.changelog_topic.empty()) {
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
    };
    if (only != nullptr) {
      add(*only);
    } else {
      for (auto& [number, o] : owned_) add(*o);
    }
    if (list->cnt == 0) return;
    const rd_kafka_resp_err_t err = rd_kafka_commit(consumer_.get(), list.get(), sync ? 0 : 1);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR && !sync) {
      Committed(err, list.get());
    }
  }

  void Committed(rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* offsets) {
    if (offsets == nullptr) return;
    std::vector<int32_t> refused;
    std::string why;
    for (int i = 0; i < offsets->cnt; ++i) {
      const rd_kafka_topic_partition_t& tp = offsets->elems[i];
      const rd_kafka_resp_err_t e = tp.err != RD_KAFKA_RESP_ERR_NO_ERROR ? tp.err : err;
      if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
        ++offset_commits_;
        continue;
      }
      if (e == RD_KAFKA_RESP_ERR__NO_OFFSET) continue;
      if (auto it = owned_.find(tp.partition); it != owned_.end()) it->second->sent = -1;  // send again
      if (RefusedByGroup(e)) {
        ++offset_commits_refused_;
        refused.push_back(tp.partition);
        why = rd_kafka_err2name(e);
      } else {
        ++offset_commit_errors_;
        options_.log(absl::StrCat("offset commit of partition ", tp.partition, " failed: ", rd_kafka_err2str(e)));
      }
    }
    if (!refused.empty()) {
      options_.log(absl::StrCat("offset commit refused by the group (", why, ") for [", absl::StrJoin(refused, " "),
                                "]: this member's generation is over (replaced, or a rebalance moved on); "
                                "its changelog batches after a newer claim are ignored by every replay"));
    }
  }

  KafkaConsumerOptions options_;
  PartitionSet* const set_;
  bool reset_earliest_ = true;
  bool closed_ = false;
  bool waiting_ = false;            // a partition's restore or retry pause is due to end
  std::atomic<bool> steady_{true};  // the group's join state, as librdkafka's statistics last said
  kafka::Client consumer_;
  std::unique_ptr<ChangelogProducer> producer_;
  std::unique_ptr<kafka::PartitionRestorer> restorer_;
  Steady::time_point next_commit_ = Steady::now();

  mutable std::mutex mu_;  // owned_'s shape and states, for readers on other threads
  std::map<int32_t, std::unique_ptr<OwnedPartition>> owned_;
  double last_restore_seconds_ = 0, max_restore_seconds_ = 0;
  uint64_t changelog_records_closed_ = 0, changelog_bytes_closed_ = 0;  // the producer's, once it is gone
  uint64_t dead_letter_failures_closed_ = 0;

  std::atomic<uint64_t> messages_{0}, applied_{0}, duplicates_{0}, retried_{0}, dead_letters_{0}, unavailable_{0};
  std::atomic<uint64_t> offset_commits_{0}, offset_commits_refused_{0}, offset_commit_errors_{0};
  std::atomic<uint64_t> changelog_failures_{0}, snapshots_{0};
  std::atomic<uint64_t> assignments_{0}, revocations_{0}, lost_{0};
  std::atomic<uint64_t> restores_{0}, catch_ups_{0}, claims_{0}, claims_lost_{0}, restore_failures_{0};
  std::atomic<uint64_t> restored_batches_fenced_{0}, restored_batches_after_gap_{0}, data_loss_partitions_{0};
  std::atomic<uint64_t> store_pauses_{0};
  std::atomic<uint64_t> partial_batches_{0}, restarts_{0};
  LatencyHistogram step_latency_;
  KafkaPartitionView::Overlay overlay_;
};

absl::StatusOr<std::unique_ptr<KafkaConsumer>> KafkaConsumer::Create(KafkaConsumerOptions options, PartitionSet* set) {
  if (set == nullptr) return absl::InvalidArgumentError("KafkaConsumer needs a PartitionSet");
  if (options.bootstrap_servers.empty() || options.group_id.empty() || options.input_topic.empty()) {
    return absl::InvalidArgumentError("KafkaConsumerOptions needs bootstrap_servers, group_id and input_topic");
  }
  if (!options.handler) return absl::InvalidArgumentError("KafkaConsumerOptions needs a handler");
  if (!options.event_of) options.event_of = DefaultKafkaEventOf;
  if (options.max_batch == 0) options.max_batch = 1;
  if (options.input_topic.find(':') != std::string::npos) {
    return absl::InvalidArgumentError("the input topic's name may not hold ':' (partition names are built from it)");
  }
  auto impl = std::make_unique<Impl>(std::move(options), set);
  if (absl::Status s = impl->Start(); !s.ok()) return s;
  return std::unique_ptr<KafkaConsumer>(new KafkaConsumer(std::move(impl)));
}

KafkaConsumer::KafkaConsumer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
KafkaConsumer::~KafkaConsumer() = default;
absl::StatusOr<size_t> KafkaConsumer::Poll() { return impl_->Poll(); }
absl::Status KafkaConsumer::Close() { return impl_->Close(); }
std::vector<int32_t> KafkaConsumer::ActivePartitions() const { return impl_->ActivePartitions(); }
KafkaConsumerStats KafkaConsumer::GetStats() const { return impl_->GetStats(); }
std::string KafkaConsumer::ToPrometheus() const { return impl_->ToPrometheus(); }

}  // namespace idem
