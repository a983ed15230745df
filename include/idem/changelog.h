// idem/changelog.h — the changelog protocol of a partition whose owner changes (docs/SCALING.md).
//
// A partition's dedup state (idem's records) and its partition-local effects live with its owner and
// are copied, as they change, into a log that outlives any owner (for Kafka: a changelog topic, one
// partition per input partition). Nothing here talks to a queue: this is the format of the log's
// records and the rule by which a new owner rebuilds the state from them.
//
//   Claim          written by each new owner, before it processes anything: {ordinal, claimant}. A
//                  claim counts if its ordinal is one more than the last claim that counted; a second
//                  claim of the same ordinal lost the race (its writer must stop).
//   Batch          one per local commit write (Options::commit_hook): its operations, by partition
//                  family index (0 = idem's records, 1.. = the partition's effect families, in declared
//                  order: column family IDs differ from DB to DB), the writer's claim, its local
//                  sequence, the sequence of the writer's previous batch under the same claim (0: its
//                  first) and the input offset it covers up to. A batch counts only if it carries the
//                  claim that counted last before it in log order: a zombie's batches written after a
//                  newer owner's claim are ignored, its earlier ones (complete local commits) are kept.
//                  And a batch counts only if its predecessor under its claim counted: once a batch is
//                  missing from the log (it could not be produced, or was lost), every later batch of
//                  that claim is ignored, because each was computed on a state that held the missing
//                  one. A writer whose record failed must stop producing and be rebuilt from the log
//                  under a new claim; its input offsets past the failed record must never be committed.
//   SnapshotBegin  a sorted copy of the writer's state starts: {snapshot (its local sequence),
//   SnapshotChunk  input offset}; chunks of entries, sorted by (family, key); then the end with the
//   SnapshotEnd    entry count and a checksum. A snapshot bounds how much log a restore reads and feeds
//                  SST files with no sort step.
//
// Every record carries its writer's claim. The byte format (EncodeChangelogRecord) is versioned; a
// decoder refuses what it does not know with kDataLoss, never guesses.
//
// Thread safety: the functions are pure; a ChangelogReplayer is used by one thread at a time.
#ifndef IDEM_CHANGELOG_H_
#define IDEM_CHANGELOG_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rocksdb {
class WriteBatch;
}  // namespace rocksdb

namespace idem {

// Who wrote a record: the owner's ordinal (the count of owners so far) and a number the owner drew at
// random when it claimed, so that two owners racing for the same ordinal are told apart.
struct ClaimId {
  uint64_t ordinal = 0;  // 0: before the first claim
  uint64_t claimant = 0;
  friend bool operator==(const ClaimId& a, const ClaimId& b) {
    return a.ordinal == b.ordinal && a.claimant == b.claimant;
  }
  friend bool operator!=(const ClaimId& a, const ClaimId& b) { return !(a == b); }
};

// One write of a batch or one entry of a snapshot, by partition family index.
struct ChangelogOp {
  enum class Kind : uint8_t { kPut = 1, kDelete = 2, kSingleDelete = 3 };  // persisted: never renumber
  Kind kind = Kind::kPut;
  uint32_t family = 0;
  std::string key;
  std::string value;  // kPut only
  friend bool operator==(const ChangelogOp& a, const ChangelogOp& b) {
    return a.kind == b.kind && a.family == b.family && a.key == b.key && a.value == b.value;
  }
};

struct ChangelogRecord {
  enum class Type : uint8_t {  // persisted: never renumber
    kClaim = 1,
    kBatch = 2,
    kSnapshotBegin = 3,
    kSnapshotChunk = 4,
    kSnapshotEnd = 5,
  };
  Type type = Type::kClaim;
  ClaimId claim;
  // kBatch: the writer's sequence of the write. kSnapshot*: the snapshot's id, the writer's sequence
  // when it began (every batch of the writer at or below it is in the snapshot).
  uint64_t sequence = 0;
  // kBatch, kSnapshotBegin: the input offset processing resumes at once this record counts (-1: none).
  int64_t input_offset = -1;
  // kBatch: the writer's `sequence` of its previous batch under the same claim, 0 for its first (the
  // order a replay checks: a batch whose predecessor is missing does not count). nullopt: not stated —
  // a record of format version 1, replayed without the check. Writers of this release always set it.
  std::optional<uint64_t> previous_sequence;
  // kBatch: the operations, in batch order. kSnapshotChunk: puts, sorted by (family, key), each
  // chunk continuing where the previous one ended.
  std::vector<ChangelogOp> ops;
  // kSnapshotEnd: how many entries the chunks carried, and their checksum (SnapshotChecksum).
  uint64_t entry_count = 0;
  uint64_t checksum = 0;
};

std::string EncodeChangelogRecord(const ChangelogRecord& record);
// kDataLoss for bytes that are not a changelog record of a version this release knows.
absl::StatusOr<ChangelogRecord> DecodeChangelogRecord(std::string_view bytes);

// The checksum of a snapshot's entries, folded in order: start from 0, then one call per entry.
uint64_t SnapshotChecksum(uint64_t previous, const ChangelogOp& entry);

// The operations of a committed batch (CommittedWrite::batch), by family index: family_of maps a
// column family ID of the writer's DB to the partition's index (nullopt: not one of the partition's
// families). kInvalidArgument for a write to another family or one that is not a put or a delete
// (Options::effect_column_families keeps them out of commits).
absl::StatusOr<std::vector<ChangelogOp>> OpsOfBatch(const rocksdb::WriteBatch& batch,
                                                    const std::function<std::optional<uint32_t>(uint32_t)>& family_of);

// Rebuilds a partition's state from its changelog, read in log order from a starting point: the log's
// first record (offset 0 of a log nothing was ever removed from) or a snapshot's SnapshotBegin (a
// pointer the owner saved after the whole snapshot was in the log).
//
// The sink receives, in this order: the snapshot's entries (sorted by family then key; only when
// starting from a snapshot), SnapshotDone, then every batch that counts after the snapshot (or from
// the log's start), in log order. Batches read while the snapshot is still arriving are held back
// until it is complete. A sink error stops the replay and is returned.
class ChangelogReplayer {
 public:
  class Sink {
   public:
    virtual ~Sink() = default;
    virtual absl::Status SnapshotEntry(const ChangelogOp& entry) = 0;
    virtual absl::Status SnapshotDone() = 0;
    virtual absl::Status Apply(const ChangelogRecord& batch) = 0;
  };

  enum class Start { kLogStart, kSnapshot, kLocalCopy };
  ChangelogReplayer(Start start, Sink* sink);
  // Catches up a local copy (a partition's state as its owner left it, every batch of that owner in
  // the log) from the owner's own claim or a later point it noted: replay starts as if `copy_claim`
  // had just counted. The copy is stale when a batch under its claim is fenced (a newer owner claimed
  // while the copy's owner still committed: the copy holds commits the log does not count): Feed then
  // answers kAborted, and the copy must be dropped and the partition restored from a snapshot or the
  // log's start.
  ChangelogReplayer(ClaimId copy_claim, Sink* sink);

  // The record read at `offset`. Offsets must increase (gaps are fine: a log may skip offsets).
  // kDataLoss when the log does not read as this protocol writes it: the first record from a snapshot
  // pointer is not a SnapshotBegin; snapshot entries out of order, not puts, or failing their count or
  // checksum; a batch operation of an unknown kind; a record that does not decode.
  absl::Status Feed(int64_t offset, std::string_view bytes);
  absl::Status Feed(int64_t offset, const ChangelogRecord& record);
  // The end of what is to be read. kDataLoss when a snapshot we started from never ended.
  absl::Status Finish();

  // The last claim that counted: a new owner claims {ordinal + 1, its own claimant}.
  const ClaimId& current_claim() const { return current_; }
  // The input offset of the last record that counted with one (-1: none).
  int64_t input_offset() const { return input_offset_; }
  uint64_t batches_applied() const { return applied_; }
  uint64_t batches_fenced() const { return fenced_; }    // ignored: written under an outdated claim
  uint64_t claims_lost() const { return claims_lost_; }  // a claim whose ordinal was taken or skipped
  // Batches ignored because an earlier batch of their claim is missing from the log (a gap).
  uint64_t batches_after_gap() const { return after_gap_; }
  // Batches ignored because the log holds them twice (their claim had counted them already).
  uint64_t batches_repeated() const { return duplicates_; }
  int64_t last_offset() const { return last_offset_; }  // the last offset fed (-1: none)

 private:
  absl::Status Accept(const ChangelogRecord& record);
  absl::Status AfterGap();
  absl::Status OnSnapshotRecord(const ChangelogRecord& record);

  const Start start_;
  Sink* const sink_;
  ClaimId copy_claim_;  // kLocalCopy
  int64_t last_offset_ = -1;
  bool started_ = false;
  ClaimId current_;
  int64_t input_offset_ = -1;
  uint64_t applied_ = 0, fenced_ = 0, claims_lost_ = 0, after_gap_ = 0, duplicates_ = 0;
  // The order of the current claim's batches: the sequence of the last one that counted (0: none yet;
  // nullopt: not known — replay started inside the claim, from a snapshot or a local copy), and
  // whether one went missing.
  std::optional<uint64_t> claim_last_;
  bool claim_broken_ = false;
  // The snapshot we started from, while it arrives.
  bool in_snapshot_ = false;
  bool snapshot_done_ = false;
  uint64_t snapshot_id_ = 0;
  ClaimId snapshot_claim_;
  uint64_t entries_ = 0, checksum_ = 0;
  std::optional<ChangelogOp> last_entry_;   // for the order check
  std::vector<ChangelogRecord> held_back_;  // batches that count, read before the snapshot ended
};

// The first offset a restore must read, checked against what the log still holds: kDataLoss when the
// log's start (its retention moved it) is past it, so the restore would silently miss state.
// `pointer`: the offset of the snapshot to start from, or nullopt (from the log's first record, 0).
absl::Status CheckReplayable(std::optional<int64_t> pointer, int64_t log_start_offset);

// The first half of CheckRestorable, before a start is chosen: kDataLoss when the log ends
// (`log_end_offset`, last offset + 1) below `recorded_end`, whatever a restore would read.
absl::Status CheckLogEnd(int64_t recorded_end, int64_t log_end_offset);

// What a restore must prove before it reads: that the log still holds everything anyone recorded as
// committed. `recorded_end`: the highest end (last offset + 1) of the log that any owner recorded —
// the group's committed metadata (the log's end when the offset was committed), a local copy's
// noted offset + 1, a snapshot pointer + 1 — or 0 when nothing was recorded. kDataLoss when the log
// ends below it (the topic was recreated or renamed, or truncated: restoring would silently give a
// state that forgot committed IDs, and their redeliveries would apply again), or when its start is
// past `pointer` (CheckReplayable). A restore refused here must stay refused until an operator
// decides; it is never retried into an empty state.
// kInvalidArgument for negative offsets or an end below the start.
absl::Status CheckRestorable(std::optional<int64_t> pointer, int64_t recorded_end, int64_t log_start_offset,
                             int64_t log_end_offset);

}  // namespace idem

#endif  // IDEM_CHANGELOG_H_
