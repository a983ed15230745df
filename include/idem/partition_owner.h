// idem/partition_owner.h — the owner's rules: what a member of any transport (Kafka, Redis Cluster,
// NATS) does with a partition it is given, so that an adapter writes only its I/O (docs/SCALING.md).
//
// Taking a partition, in order:
//   1. Facts: the set's local copy (PartitionSet::LocalCopies), the input position committed before
//      (with its CommitMetadata), the changelog's start and end.
//   2. PlanRestore: where to read from, after proving the log still holds what anyone recorded.
//   3. PartitionRestore::Begin, then Feed every changelog record from plan.read_from on, in log order,
//      up to plan.read_until.
//   4. To own it: write Claim()'s record to the changelog, feed on through the offset the log gave it,
//      then Claimed(offset) — kAborted when another member's claim of that ordinal counted first.
//   5. Finish, then PartitionSet::Activate with ActivateUnderClaim(claim) and, per commit, the Batch
//      records of ClaimBatches in the commit hook (each commit tagged with the input position it covers:
//      Processor::HandleBatch's commit_tag); snapshots when SnapshotCadence says.
//   6. Commit the input position with EncodeCommitMetadata({log end acknowledged, snapshot pointer}).
//
// Thread safety: the functions are thread-safe; a PartitionRestore, ClaimBatches or SnapshotCadence is
// used by one thread at a time (ClaimBatches: the commit hook's, which runs one call at a time).
#ifndef IDEM_PARTITION_OWNER_H_
#define IDEM_PARTITION_OWNER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "idem/changelog.h"
#include "idem/partition_set.h"

namespace idem {

namespace engine {
class RestoreSession;
}  // namespace engine

// What an input-position commit carries for a restore ("idem2 log=<end> snapshot=<offset>", a few
// dozen bytes): the changelog's end (last acknowledged offset + 1) when the position was committed —
// a restore that finds the log ending below it refuses with kDataLoss (the log was recreated, renamed
// or truncated) — and the snapshot pointer, when a snapshot is complete in the log. Fields a later
// release adds are ignored, whatever their values; a repeated log end counts at its highest; offsets
// past 2^62 do not decode; metadata of the previous format ("idem1 snapshot=<offset>") reads as log
// end = pointer + 1.
struct CommitMetadata {
  int64_t log_end = 0;
  std::optional<int64_t> snapshot;
};
std::string EncodeCommitMetadata(const CommitMetadata& metadata);
// nullopt for metadata that is not idem's (empty, or another tool's).
std::optional<CommitMetadata> DecodeCommitMetadata(std::string_view metadata);
// The snapshot pointer alone, in the previous format (still read), and from either format.
std::string EncodeSnapshotPointer(int64_t changelog_offset);
std::optional<int64_t> DecodeSnapshotPointer(std::string_view metadata);

// What a member knows of a partition it was given, before it reads the changelog.
struct RestoreFacts {
  std::optional<LocalCopy> copy;            // the set's local copy of the partition, clean or not
  bool position_committed = false;          // an input position was committed for the partition
  std::optional<CommitMetadata> committed;  // idem's metadata beside it (nullopt: none, or not idem's)
  bool has_changelog = true;                // false: the member runs without one (its state is local)
  int64_t log_start = 0;                    // the changelog's first offset and its end (last + 1)
  int64_t log_end = 0;
  // false: the local copy is not used (a read-only restore for an audit, or a catch-up that failed:
  // the copy was dropped). It still counts for the log end it proves.
  bool may_use_copy = true;
  bool from_log_start = false;  // replay the whole log, ignoring the snapshot pointer (an audit)
};

struct RestorePlan {
  enum class From {
    kLocalCopy,  // catch the clean copy up with the log from read_from (the offset of its own claim)
    kSnapshot,   // restore from the snapshot whose SnapshotBegin is at read_from, then the log's tail
    kLogStart,   // restore from the log's first record
    kKeepCopy,   // no changelog: the clean local copy is the state, nothing is read
    kEmpty,      // no changelog and no clean copy: start empty, nothing is read
  };
  From from = From::kLogStart;
  int64_t read_from = 0;
  int64_t read_until = 0;        // the log's end when planned: feed at least up to here
  ClaimId copy_claim;            // kLocalCopy, kKeepCopy: the claim the copy was kept under
  int64_t recorded_end = 0;      // the end the log was proven to reach (CheckRestorable)
  std::string Describe() const;  // for logs: "snapshot at changelog offset 12 + tail to 40"
};

// Where a restore starts, by cost: a clean local copy with these families whose claim offset is inside
// the log and newer than the snapshot pointer; the snapshot pointed to; the log's first record. Before
// any of them, the log must reach the highest end anyone recorded (the committed metadata, the copy's
// claim offset + 1; a position committed without idem's metadata counts as end 1): kDataLoss when it
// does not, or when retention removed what the chosen start needs (CheckRestorable). A refusal must
// stay a refusal until an operator decides; it is never retried into an empty state. kInvalidArgument
// for watermarks that are not a log (a negative start, an end below it). An audit (from_log_start)
// never uses the local copy.
absl::StatusOr<RestorePlan> PlanRestore(const PartitionLayout& layout, const RestoreFacts& facts);

// A fresh claimant for a claim: random and non-zero, so that two members racing for one ordinal are
// told apart.
uint64_t NewClaimant();
// The claim after `last` (the last claim that counted): {last.ordinal + 1, NewClaimant()}.
ClaimId NextClaim(const ClaimId& last);

// The options to activate a partition under `claim`: its token range (TokenRangeOfClaim), the claim,
// and the restored or caught-up local copy. The caller adds its commit hook. kFailedPrecondition past
// kMaxClaimOrdinal: the partition must stay paused.
absl::StatusOr<ActivateOptions> ActivateUnderClaim(const ClaimId& claim);

// One restore or catch-up of a partition into the set, as a plan says, driven by the transport: it
// reads the changelog and feeds each record here. Nothing in it calls back into the transport. It must
// be destroyed before its set.
// Destroyed before Finish returned OK, it is aborted: the partition's families are dropped (kLocalCopy:
// the copy too) and the partition must be planned again.
class PartitionRestore {
 public:
  // kFailedPrecondition for kLocalCopy without a clean copy of this layout, for kKeepCopy, and while
  // the partition is active, being restored or deactivated; kUnavailable while the set reopens its DB;
  // kResourceExhausted past the descriptor budget; kInvalidArgument for a bad layout.
  static absl::StatusOr<std::unique_ptr<PartitionRestore>> Begin(PartitionSet* set, const PartitionLayout& layout,
                                                                 const RestorePlan& plan);
  ~PartitionRestore();
  PartitionRestore(const PartitionRestore&) = delete;
  PartitionRestore& operator=(const PartitionRestore&) = delete;

  // The record read at `offset` (offsets increase; gaps are fine). ChangelogReplayer::Feed's errors
  // (kDataLoss: a record that does not decode or read as the protocol writes it; kAborted: the copy is
  // stale; kInvalidArgument: offsets not increasing), the sink's (storage errors; kUnavailable when the
  // set closed or reopened its DB). For kLocalCopy the first record must be the copy's own claim at
  // plan.read_from, else kAborted: the log is not the one the copy was kept against (recreated since).
  // The first error of any call ends the restore: every later call answers it, and the restore is to
  // be destroyed (its families dropped). kFailedPrecondition after Claimed or Finish.
  absl::Status Feed(int64_t offset, std::string_view bytes);
  // The Claim record to write to take the partition: the ordinal after the last claim that counted,
  // with a new claimant. Call once, after feeding up to plan.read_until.
  ChangelogRecord Claim();
  // The claim's record was written at `offset`, and everything up to it was fed: OK when it counted,
  // kAborted when another member's claim of that ordinal counted first (this member must not own the
  // partition), kFailedPrecondition before Claim, when called twice, or when the log was not fed
  // through `offset`.
  absl::Status Claimed(int64_t offset);
  // The end of the feed: the partition is a clean local copy, to activate with use_local_copy. Errors:
  // ChangelogReplayer::Finish's (kDataLoss: a snapshot never ended), kFailedPrecondition when a claim
  // was written but not confirmed, the set's (kUnavailable, kFailedPrecondition: closed).
  absl::Status Finish();

  // The claim the partition is now held under (after Claimed), else the last claim that counted
  // (kEmpty: the local copy's, whose successor a member without a changelog takes with NextClaim).
  ClaimId claim() const;
  int64_t claim_offset() const { return claim_offset_; }  // -1: not claimed
  const ChangelogReplayer& replayer() const { return replayer_; }
  uint64_t bytes_fed() const { return bytes_fed_; }

 private:
  PartitionRestore(std::unique_ptr<engine::RestoreSession> session, const RestorePlan& plan);

  std::unique_ptr<engine::RestoreSession> session_;  // the set's side: the families being written
  const RestorePlan plan_;
  ChangelogReplayer replayer_;
  absl::Status Usable() const;
  absl::Status Fail(absl::Status status);

  std::optional<ClaimId> mine_;
  absl::Status failed_;  // the first error: every later call answers it
  bool fed_any_ = false;
  int64_t claim_offset_ = -1;
  bool claimed_ = false;
  bool finished_ = false;
  uint64_t bytes_fed_ = 0;
};

// The Batch records of one owner's claim, in commit order, each naming its predecessor under the claim
// (so that a replay counts none past a missing one). Used from the commit hook.
class ClaimBatches {
 public:
  explicit ClaimBatches(const ClaimId& claim) : claim_(claim) {}
  // The record of `commit`; its tag is the input position it covers up to (exclusive; -1: none), as
  // the owner gave it to CommitBatch.
  ChangelogRecord Next(const PartitionCommit& commit);

 private:
  ClaimId claim_;
  uint64_t previous_ = 0;
};

// When an owner writes its next snapshot: once the changelog bytes it wrote since the last one, plus
// what a restore from the current pointer reads that this owner did not write (its restore's bytes),
// reach the larger of `min_bytes` and the last snapshot's own size. A restore then reads at most about
// twice a snapshot, and snapshots cost about as much as the batches between them.
class SnapshotCadence {
 public:
  // `bytes_now`: the partition's changelog bytes issued so far by this owner; `restore_bytes`: what its
  // restore or catch-up read from the log.
  SnapshotCadence(uint64_t min_bytes, uint64_t restore_bytes, uint64_t bytes_now)
      : min_bytes_(min_bytes), debt_(restore_bytes), at_last_(bytes_now) {}
  bool Due(uint64_t bytes_now) const;
  // A snapshot was written: the bytes issued before and after it.
  void Wrote(uint64_t bytes_before, uint64_t bytes_after);

 private:
  uint64_t min_bytes_;
  uint64_t debt_;
  uint64_t at_last_;
  uint64_t last_size_ = 0;
};

}  // namespace idem

#endif  // IDEM_PARTITION_OWNER_H_
