// idem/kafka.h — a Kafka consumer-group member with exactly-once effects, on a PartitionSet
// (docs/SCALING.md, "The Kafka adapter").
//
//   idem::KafkaConsumerOptions o;
//   o.bootstrap_servers = "broker:9092";  o.group_id = "ledger";
//   o.input_topic = "payments";           o.changelog_topic = "ledger-changelog";  // same partition count
//   o.effect_families = {"balances"};      // partition-local state, family index 1
//   o.handler = [](const idem::KafkaMessage& m, const idem::EventContext& ctx, idem::KafkaPartitionView& p)
//       -> absl::StatusOr<std::string> {
//     auto balance = p.Get(1, account);                       // sees the batch's earlier events
//     ctx.effects->Put(p.family(1), account, new_balance);   // committed with the event's marker
//     return "ok";
//   };
//   auto consumer = idem::KafkaConsumer::Create(o, set.get());   // set: a PartitionSet, outlives it
//   while (running) consumer.value()->Poll();
//   consumer.value()->Close();
//
// Kafka's group membership decides which member owns which input partition; each input partition is a
// partition of the set, named "<input_topic>/<number>", whose every commit (idem's marker and the
// handler's effects, one WriteBatch) is also produced, as a changelog Batch record, to the same-numbered
// partition of the changelog topic (idempotent producer, acks=all). A member that is assigned a
// partition pauses it, restores it in the background — from its own clean local copy and the log's
// tail when it has one, else from the snapshot its pointer names (kept in the input's offset-commit
// metadata, a few dozen bytes) and the tail, else from the log's first record — claims it in the
// changelog (idem/changelog.h), and only then resumes it. Input offsets are committed only once every
// changelog record of the events before them is acknowledged. On revocation it commits what it can,
// deactivates the partition and keeps a clean local copy (if every record reached the log); when the
// assignment was lost it commits nothing.
//
// Zombies. A member paused past the session timeout wakes still believing it owns its partitions: its
// offset commits are refused by the group (counted as offset_commits_refused), its changelog batches
// carry a claim the new owner's claim superseded (ignored by every replay), and its tokens are below the
// new owner's token floor (TokenRangeOfClaim of its claim; a claim past the last there can be stays
// paused), so a downstream system
// that fences by token refuses it too.
//
// Failures. A store failure pauses the affected partitions (librdkafka's pause); once the store has
// recovered (the Processor's own backoff), each is rebuilt from its changelog, because the failed
// write's outcome is unknown (it may be in the local state without its changelog record), and resumed
// at the group's committed offset. A changelog record that cannot be produced stops the partition the
// same way: nothing more is produced for it, no offset is committed after it, its local copy is dropped,
// and it is restored from the log under a new claim; the records it produced between the failure and
// its noticing are ignored by every replay (each batch names its predecessor, and a batch whose
// predecessor is missing never counts: idem/changelog.h), and their events come again from the committed
// offset. A changelog that no longer holds what a restore must read — retention removed it, or it ends
// below the end recorded with the group's committed offsets or a kept local copy (the topic was
// recreated, renamed or truncated) — is kDataLoss for that partition: it stays paused, the log callback
// and `data_loss_partitions` say so, it is never restored empty, and its local copy is left as it was.
//
// Needs librdkafka (Debian librdkafka-dev); built as idem::kafka when it is found.
//
// Thread safety: Poll and Close are called from one thread (the handler runs on it); GetStats and
// ToPrometheus from any. The PartitionSet must outlive the consumer; the consumer owns its Kafka clients,
// a delivery-report thread and a restore thread.
//
// Errors: Create returns kInvalidArgument for missing or bad options (librdkafka refusing a setting
// names it) and kUnavailable when the topics' metadata cannot be read in time; kFailedPrecondition when
// the changelog topic's partition count differs from the input's. Poll returns kFailedPrecondition after
// Close, kUnavailable for a fatal error of the consumer or the changelog producer (Close the consumer and
// create a new one: its partitions come back through the group, restored); per-partition trouble is never an error of
// Poll (it is logged, counted and handled per partition).
#ifndef IDEM_KAFKA_H_
#define IDEM_KAFKA_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "idem/partition_owner.h"
#include "idem/partition_set.h"
#include "idem/processor.h"

namespace rocksdb {
class ColumnFamilyHandle;
class DB;
}  // namespace rocksdb

namespace idem {

// A message of the input topic, borrowed for the duration of the handler's call.
struct KafkaMessage {
  int32_t partition = -1;
  int64_t offset = -1;
  std::string_view key;
  std::string_view value;
  // The last header named `name`, or nullopt.
  std::optional<std::string_view> Header(std::string_view name) const;
  const void* native = nullptr;  // the rd_kafka_message_t
};

// The event a message carries, or nullopt when it carries none (the message is dead-lettered).
using KafkaEventOf = std::function<std::optional<Event>(const KafkaMessage&)>;
// The default: the ID is the `idem-id` header, else the key; the fingerprint is FingerprintOf(value).
std::optional<Event> DefaultKafkaEventOf(const KafkaMessage& message);

// What a handler sees of the message's partition. A batch's events commit together (one WriteBatch,
// after the last handler), so the DB does not yet hold what earlier events of the batch wrote: Get
// reads those first — a handler that reads, modifies and writes (a balance) sees its predecessors.
// Valid during the handler's call; used by its thread only.
class KafkaPartitionView {
 public:
  int32_t number() const { return number_; }
  Partition& partition() const { return *partition_; }
  // Family `index` of the partition (0: idem's records; 1..: effect_families), or null past the last.
  rocksdb::ColumnFamilyHandle* family(size_t index) const;
  // `key` in family `index` as of the batch's earlier events that were handled (nullopt: absent).
  // kInvalidArgument for a family past the last; kUnavailable for a read error.
  absl::StatusOr<std::optional<std::string>> Get(size_t index, std::string_view key) const;

  class Overlay;
  KafkaPartitionView(int32_t number, Partition* partition, rocksdb::DB* db, const Overlay* overlay)
      : number_(number), partition_(partition), db_(db), overlay_(overlay) {}

 private:
  int32_t number_;
  Partition* partition_;
  [[maybe_unused]] rocksdb::DB* db_;  // reads go through partition_ (Partition::Get)
  const Overlay* overlay_;
};

// The handler: returns the result to store with the marker (see idem::Handler for what its errors
// mean); writes its effects into ctx.effects, in view.family(1..) only (others are refused).
using KafkaHandler =
    std::function<absl::StatusOr<std::string>(const KafkaMessage&, const EventContext&, KafkaPartitionView& view)>;

struct KafkaConsumerOptions {
  std::string bootstrap_servers;
  std::string group_id;
  std::string input_topic;
  // One partition per input partition. Empty: no changelog — a partition's state stays with the member
  // that wrote it, so a partition that moves starts empty there (for measurements and one-member groups).
  std::string changelog_topic;
  // Where dead letters go: the message as it came — its key, its value and every header, `idem-id`
  // among them, so that replaying it after a fix gives the same event — plus `idem-dead-letter` (why)
  // and `idem-source` ("<topic>/<partition>@<offset>"). Empty: they are logged and counted only. A dead
  // letter is not part of the partition's state: its offset is committed, and one that cannot be
  // produced (refused at enqueue, e.g. larger than message.max.bytes, or by the broker) is counted in
  // dead_letter_failures and logged loudly ("DEAD LETTER NOT WRITTEN") with its partition and offset; the
  // message is still in the input topic until its retention ends. The partition does not stop.
  std::string dead_letter_topic;
  // The partition-local column families the handler writes, in order (family index 1, 2, ...).
  std::vector<std::string> effect_families;
  KafkaHandler handler;
  KafkaEventOf event_of = DefaultKafkaEventOf;

  // librdkafka settings on top of idem's: group.id, bootstrap.servers, enable.auto.commit=false,
  // partition.assignment.strategy=cooperative-sticky, and for the changelog producer
  // enable.idempotence=true, acks=all, compression.type=lz4. Applied after them (so they may override
  // e.g. session.timeout.ms or the assignment strategy; the eager protocol works too).
  std::vector<std::pair<std::string, std::string>> consumer_config;
  std::vector<std::pair<std::string, std::string>> producer_config;

  // Messages handled per Poll, at most (one ReserveBatch + CommitBatch per partition).
  size_t max_batch = 500;
  absl::Duration poll_timeout = absl::Milliseconds(100);
  // How often acknowledged progress is committed to the group.
  absl::Duration commit_interval = absl::Milliseconds(200);
  // A partition snapshots itself into its changelog once the records it produced since its last
  // snapshot exceed max(snapshot_min_bytes, that snapshot's size): a restore then reads at most about
  // twice the state, and the log grows by at most that between snapshots.
  size_t snapshot_min_bytes = 4 << 20;
  size_t snapshot_chunk_bytes = 256 << 10;
  // Commit the revoked partitions' progress in the revocation callback (a real broker accepts it;
  // librdkafka 2.0.2's mock refuses it during a rebalance, which costs duplicates, not correctness).
  bool commit_on_revoke = true;
  // How long a restore waits for the changelog (watermarks, records, its claim's acknowledgement).
  absl::Duration restore_timeout = absl::Seconds(30);
  // A partition whose handler asked to retry (kRetryLater) is paused this long, then read again.
  absl::Duration retry_pause = absl::Milliseconds(200);
  // Each partition's Processor's options. `thread` null (default): every partition of the member shares
  // one ProcessorThread.
  ProcessorOptions processor;
  // Where the consumer reports what operators must know (rebalances, restores, refusals, data loss).
  // Default: stderr.
  std::function<void(std::string_view)> log;
};

struct KafkaConsumerStats {
  uint64_t messages = 0;  // input messages handled
  uint64_t applied = 0, duplicates = 0, retried = 0, dead_letters = 0, unavailable = 0;
  uint64_t dead_letter_failures = 0;    // dead letters that could not be produced (logged; see dead_letter_topic)
  uint64_t offset_commits = 0;          // partitions' offsets committed and accepted
  uint64_t offset_commits_refused = 0;  // refused by the group: this member had been replaced
  uint64_t offset_commit_errors = 0;    // other failures (retried at the next commit)
  uint64_t changelog_records = 0, changelog_bytes = 0;
  uint64_t changelog_failures = 0;  // records that could not be produced (partition restored again)
  uint64_t snapshots = 0;
  uint64_t assignments = 0, revocations = 0, lost = 0;  // partitions
  uint64_t restores = 0, catch_ups = 0, claims = 0, claims_lost = 0;
  uint64_t restore_failures = 0;
  uint64_t restored_batches_fenced = 0;  // changelog batches a restore ignored: written under a superseded claim
  // Changelog batches a restore ignored because an earlier batch of their claim is missing from the log
  // (its record failed; the events they carried are handled again from the committed offset).
  uint64_t restored_batches_after_gap = 0;
  uint64_t data_loss_partitions = 0;  // partitions left paused: their changelog no longer holds their state
  // Batches in which an event's commit was refused (its lease lost) while a later event, which may have
  // read its effects through KafkaPartitionView::Get, committed. Logged; expected to stay 0 (the
  // Processor renews leases while handlers run).
  uint64_t partial_batches = 0;
  uint64_t store_pauses = 0;        // partitions paused by a store failure
  uint64_t restarts = 0;            // partitions rebuilt from the changelog (a failed record or store write)
  uint64_t fenced = 0;              // store calls refused below the token floor, all partitions
  double last_restore_seconds = 0;  // assignment to resumption, the last partition
  double max_restore_seconds = 0;
  size_t active_partitions = 0;
  size_t paused_partitions = 0;
  // Per assigned input partition: messages in it beyond this member's position (its high watermark as
  // the last fetch saw it, minus the next offset to consume); -1 until the partition has been fetched
  // (restoring, or paused since it was assigned).
  std::map<int32_t, int64_t> input_lag;
  LatencySummary step_latency;  // one batch: reserve + handlers + commit + changelog enqueue
  std::string ToPrometheus() const;
};

class KafkaConsumer {
 public:
  static absl::StatusOr<std::unique_ptr<KafkaConsumer>> Create(KafkaConsumerOptions options, PartitionSet* set);
  ~KafkaConsumer();  // Close() if not yet closed
  KafkaConsumer(const KafkaConsumer&) = delete;
  KafkaConsumer& operator=(const KafkaConsumer&) = delete;

  // One round: rebalance callbacks, partitions whose restore finished resumed, up to max_batch
  // messages handled, acknowledged progress committed when due. Returns how many messages were handled.
  absl::StatusOr<size_t> Poll();
  // Leaves the group: every partition revoked (committed, deactivated with a clean copy), the clients
  // closed. Idempotent.
  absl::Status Close();

  // The input partitions this member holds and has resumed (restored and claimed).
  std::vector<int32_t> ActivePartitions() const;
  KafkaConsumerStats GetStats() const;
  // The consumer's counters, then the set's (PartitionSet::ToPrometheus).
  std::string ToPrometheus() const;

  class Impl;

 private:
  explicit KafkaConsumer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Rebuilds one input partition's state into `set` from the changelog, as a new owner would, without
// claiming it or touching the group (for verifiers, audits and operators): from the snapshot the
// group's committed metadata points to and the log after it, else from the log's first record. The
// partition ends as a clean local copy of `set`, to be read by activating it with use_local_copy.
struct KafkaRestoreOptions {
  std::string bootstrap_servers;
  std::string group_id;  // whose committed metadata holds the snapshot pointer
  std::string input_topic;
  std::string changelog_topic;
  std::vector<std::string> effect_families;
  std::vector<std::pair<std::string, std::string>> client_config;
  absl::Duration timeout = absl::Seconds(30);
  // Replay the whole log, ignoring the snapshot pointer (an audit: every batch a superseded owner
  // wrote is seen and counted); kDataLoss once retention has removed the log's start.
  bool from_log_start = false;
};
struct KafkaRestoreResult {
  std::string how;              // where it started from
  ClaimId claim;                // the last claim that counted
  int64_t committed = -1;       // the group's committed input offset (-1001: none)
  uint64_t batches_fenced = 0;  // changelog batches ignored: written under a superseded claim
  uint64_t changelog_bytes = 0;
};
// Errors: kDataLoss (the changelog no longer holds what must be read), kUnavailable (the cluster did
// not answer in time), kInvalidArgument (options), and PartitionSet::Restore's.
absl::StatusOr<KafkaRestoreResult> RestoreFromChangelog(const KafkaRestoreOptions& options, PartitionSet* set,
                                                        int32_t partition);

// What an offset commit's metadata carries for a restore: CommitMetadata (idem/partition_owner.h),
// EncodeCommitMetadata / DecodeCommitMetadata.

}  // namespace idem

#endif  // IDEM_KAFKA_H_
