// idem/partition_set.h — many partition stores in one process, on one RocksDB (docs/SCALING.md).
//
// A consumer that owns several partitions of its input (the queue decides which: Kafka's group, Redis
// Cluster slots, NATS subjects) keeps each partition's state apart so it can move alone: a partition is a
// set of column families of the set's one DB — idem's records (family 0) and the partition's declared
// effect families (1, 2, ...) — with a Store attached to its records. What would be per store is shared:
// one block cache, one write-buffer budget (RocksDB's WriteBufferManager), one maintenance thread, one
// disk guard, one listener for background errors, one Resume.
//
//   auto set = idem::PartitionSet::Open(options, "/var/lib/consumer/state");
//   idem::ActivateOptions activate;
//   idem::TokenRange tokens = *idem::TokenRangeOfClaim(ordinal);  // this owner's claim (docs/SCALING.md)
//   activate.token_floor = tokens.floor;
//   activate.token_limit = tokens.limit;
//   activate.commit_hook = [&](const idem::PartitionCommit& c) { changelog.Send(c); };
//   idem::Partition* p = *set->Activate({"orders/7", {"ledger"}}, activate);
//   p->store().Reserve(id) ... effects.Put(p->family(1), ...) ... p->store().Commit(id, token, "", &effects);
//   set->Deactivate("orders/7", idem::KeepLocalCopy::kKeep);   // revoked: close, keep a clean copy
//
// Local copies. A partition deactivated with kKeep stays on disk, marked clean, with the claim and the
// changelog offset it had reached: its owner says so by deactivating it, once its changelog has every
// commit. One still active when the process died or the set was closed is unclean (its local state may
// hold commits its changelog never got), and so is one whose store had a write fail or whose marker
// could not be written. LocalCopies() lists both; Activate reuses a clean copy only when asked to (the
// caller checks it against the changelog), and never an unclean one.
//
// Thread safety: every method may be called from any thread, concurrently with any other, Close and
// Resume included: lifecycle calls on one partition are serialized (one that meets another in progress
// gets kFailedPrecondition: "being restored", "being deactivated"), a Resume that reopens the DB makes
// Activate and Restore answer kUnavailable meanwhile (Deactivate, DropLocalCopy and a restore's end wait
// for it and act on the reopened DB), and a restore's feed that meets a Close or a
// reopen is refused from then on (the restore fails and its families are dropped). A Partition* stays
// a valid object until the set is destroyed: once the partition is deactivated or the set closed, its
// Store and its reads answer kFailedPrecondition (a handler still running on it cannot commit), and its
// family handles must no longer be used. Its Store is safe for concurrent use.
// Ownership: the set owns the DB, the partitions and their Stores.
//
// Names. A partition name is 1 to 200 bytes of '/'-separated parts ("orders/7"), none of them empty
// (no leading, trailing or double '/'), "." or "..", with no ':' and no control character (0x00-0x1f,
// 0x7f). An effect family name is 1 to 200 bytes without NUL, unique within its layout; it may be
// anything else ("0", "x:0"): it never takes the place of the set's own names.
//
// Errors, beyond those of Store:
//   kInvalidArgument    a partition or effect family name the rules above refuse (Activate, Restore,
//                       CatchUp); bad options.
//   kFailedPrecondition Activate of an active partition, or one being restored or deactivated; Restore or
//                       CatchUp of a partition that is active, being restored or being deactivated;
//                       CatchUp, or Activate with use_local_copy, without a clean local copy with these
//                       effect families; DropLocalCopy of an active partition, or one being restored or
//                       deactivated; any call on a closed set.
//   kUnavailable        Activate, Restore or CatchUp while a Resume reopens the DB (retry), a storage
//                       error, or a DB down after one.
//   kResourceExhausted  Activate, or Restore into fresh families, while the set's open files are at half
//                       the soft descriptor limit (PartitionSetOptions::raise_descriptor_limit).
//   kNotFound           Deactivate of a partition that is not active; DropLocalCopy of a partition with
//                       no local copy.
//   Restore and CatchUp also return what `feed` returns (e.g. kAborted: a stale copy; kDataLoss: a log
//   that does not prove what it holds), and kUnavailable when the set closed or reopened its DB while
//   `feed` ran (the restore's families are dropped).
#ifndef IDEM_PARTITION_SET_H_
#define IDEM_PARTITION_SET_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "idem/changelog.h"
#include "idem/options.h"
#include "idem/stats.h"
#include "idem/store.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
}  // namespace rocksdb

namespace idem {

namespace engine {
struct PartitionSetAccess;  // the engine's own access (restore sessions, for idem/partition_owner.h)
}  // namespace engine

struct PartitionSetOptions {
  // What every partition's Store runs with (ttl, lease, durable_reservations, caches, limits, clock).
  // The set fills in the rest: column_family, token_floor, effect_column_families, commit_hook; its own
  // maintenance thread replaces the stores' (maintenance_interval below); write_buffer_size applies per
  // partition family (keep it small: the budget below caps all of them together).
  Options store = DefaultStoreOptions();
  // One LRU block cache for every partition's families.
  size_t block_cache_bytes = 256 << 20;
  // All memtables of all partitions together (a WriteBufferManager): past it, RocksDB flushes the largest.
  size_t write_buffer_budget_bytes = 256 << 20;
  // One maintenance thread for all partitions (expiry passes); 0 disables it.
  absl::Duration maintenance_interval = absl::Seconds(2);
  bool create_if_missing = true;
  // Descriptors. RocksDB keeps every SST file of every partition open (its filters stay resident;
  // the FIFO profile requires it), about two descriptors per partition with data. Open raises the
  // process's soft RLIMIT_NOFILE to its hard limit (as Go's runtime does for every program; a service
  // gets 1 024 soft by default and usually far more hard), and Activate refuses a partition, with
  // kResourceExhausted and a message saying what to raise, while the set's open files are at half the
  // soft limit: the set then still reopens under the limit it ran under. false: the limit is left as
  // it is.
  bool raise_descriptor_limit = true;

  // A store's defaults sized for many per process: 8 MiB memtables, and a 4 096-entry recent-commit
  // cache (the single store's 65 536 entries take ~6 MiB, allocated up front, per partition).
  static Options DefaultStoreOptions() {
    Options o;
    o.write_buffer_size = 8 << 20;
    o.recent_commits_cache_entries = 1 << 12;
    return o;
  }
};

// How a partition is laid out: its name (in column-family names and as the `partition` label of its
// metrics) and its effect families, in order (their index is their place here plus 1).
struct PartitionLayout {
  std::string name;
  std::vector<std::string> effect_families;
};

// A committed batch of a partition, as its changelog carries it (idem/changelog.h).
struct PartitionCommit {
  const std::vector<ChangelogOp>* ops = nullptr;  // by family index; valid during the call
  uint64_t sequence = 0;                          // the DB's sequence of the write
  int64_t tag = -1;  // CommitBatch's tag (CommittedWrite::tag): for an owner, the input position covered
};

// The tokens of one claim: [floor, limit), above every token of every earlier claim and below every
// token of every later one, so that tokens grow across owners.
struct TokenRange {
  uint64_t floor = 0;
  uint64_t limit = 0;  // 0: none (the last claim there can be)
};

// Claims split the 64-bit token space into 2^24 ranges of 2^40 tokens each (about a trillion per owner).
inline constexpr uint64_t kMaxClaimOrdinal = (uint64_t{1} << 24) - 1;

// The token range of the claim with this ordinal: {ordinal << 40, (ordinal + 1) << 40}, the last
// claim's limit 0. kFailedPrecondition past kMaxClaimOrdinal: the shift would wrap, and the next owner's
// tokens would start again below a zombie's (the partition's changelog needs a new topic, or its claims
// another scheme). Use it rather than shifting by hand. Thread-safe.
absl::StatusOr<TokenRange> TokenRangeOfClaim(uint64_t ordinal);

struct ActivateOptions {
  // This owner's ownership floor (Options::token_floor) and the limit its tokens stay below
  // (Options::token_limit, its successor's floor): TokenRangeOfClaim(ordinal). 0: none. A pair that
  // leaves no token to issue (limit not above floor + 1) is refused by Activate with kInvalidArgument,
  // before anything changes.
  uint64_t token_floor = 0;
  uint64_t token_limit = 0;
  // The claim this owner holds the partition under; noted with the local copy when it is kept.
  ClaimId claim;
  // Called after each commit write that landed, in WAL order (Options::commit_hook): quick, no calls
  // into the partition's store, its Partition or the set (a reopen waits for the commit that runs the
  // hook, while it holds the set's DB). Empty: no hook (and commits are not serialized).
  std::function<void(const PartitionCommit&)> commit_hook;
  // true: use the partition's clean (or just restored) local copy; false (default): drop any local
  // copy and start empty.
  bool use_local_copy = false;
};

// A partition found on disk when the set opened.
struct LocalCopy {
  PartitionLayout layout;
  bool clean = false;  // deactivated with kKeep, or restored and not yet activated
  ClaimId claim;       // as the caller noted it at Deactivate
  int64_t changelog_offset = -1;
};

enum class KeepLocalCopy { kKeep, kDrop };

class Partition {
 public:
  virtual ~Partition() = default;
  virtual const PartitionLayout& layout() const = 0;
  virtual Store& store() = 0;
  // The column family of family `index` (0: idem's records), or null past the last. Valid until the set
  // reopens its DB (PartitionSet::Resume): take it per use.
  virtual rocksdb::ColumnFamilyHandle* family(size_t index) const = 0;
  // `key` in family `index` (0: idem's records) as committed, read with the set's DB held open, so a
  // read never meets a DB that Resume is reopening or Close is closing. nullopt: absent.
  // Errors: kInvalidArgument (no such family), kFailedPrecondition (the partition was deactivated or
  // the set closed), kUnavailable (the set is reopening its DB, or the read failed: retry later).
  virtual absl::StatusOr<std::optional<std::string>> Get(size_t index, std::string_view key) const = 0;
  // Emits a snapshot of the partition for its changelog (WriteChangelogSnapshot): its SnapshotBegin is
  // emitted while no commit hook of the partition runs, so every batch of the partition's hook is
  // either in the snapshot or after its Begin in the changelog. The rest streams while commits go on.
  virtual absl::Status WriteSnapshot(ClaimId claim, int64_t input_offset, size_t chunk_bytes,
                                     const std::function<absl::Status(const ChangelogRecord&)>& emit) = 0;
};

// Set-level counters, cumulative since Open.
struct PartitionSetStats {
  uint64_t activations = 0;  // claims: successful Activate calls
  uint64_t deactivations = 0;
  uint64_t restores = 0;          // successful Restore calls
  uint64_t catch_ups = 0;         // successful CatchUp calls
  uint64_t records_restored = 0;  // snapshot entries ingested or written, plus tail batches
  double restore_seconds = 0;     // total time in Restore
  uint64_t local_copies_dropped = 0;
  uint64_t reopens = 0;  // recoveries that closed and reopened the DB
  uint64_t fenced = 0;   // calls refused below a floor, over all partitions (also per partition)
  size_t active_partitions = 0;
};

class PartitionSet {
 public:
  // Opens (or creates) the set's DB at `path`. Partitions found there are local copies, not active.
  // Errors as Store::Open (kUnavailable: held by another process; kDataLoss: corruption).
  static absl::StatusOr<std::unique_ptr<PartitionSet>> Open(const PartitionSetOptions& options,
                                                            const std::string& path);
  ~PartitionSet();
  PartitionSet(const PartitionSet&) = delete;
  PartitionSet& operator=(const PartitionSet&) = delete;

  std::vector<LocalCopy> LocalCopies() const;

  // Creates, in one step, the column families of these partitions that do not exist yet, so that their
  // Restore or Activate finds them made. RocksDB rewrites (and re-reads) its OPTIONS file, which lists
  // every family of the DB, each time families are created: made one partition at a time, the k-th
  // costs O(k), and an assignment of N partitions O(N^2); made together, O(N) once. Partitions that are
  // active, being restored or deactivated, or have a local copy are left alone (whether a copy is kept
  // is Activate's or Restore's call), except a copy that was active when the process stopped and notes
  // no claim: nothing can use it and Restore would drop it, so it is dropped here, with the others in
  // one step (after a crash that is every copy). Families prepared and never used are dropped at the
  // next Open. Errors: kInvalidArgument (a layout the name rules refuse; nothing is created),
  // kUnavailable (a storage error, or the DB reopening), kFailedPrecondition (closed).
  absl::Status PrepareFamilies(const std::vector<PartitionLayout>& layouts);

  // Makes the partition active: its families (created, or its local copy), a Store attached to them
  // with options.store plus `options`. kFailedPrecondition if already active.
  absl::StatusOr<Partition*> Activate(const PartitionLayout& layout, const ActivateOptions& options);
  // Closes the partition's Store (its calls end first; later ones get kFailedPrecondition); kKeep leaves
  // its families as a local copy, clean unless a write of the store failed (its outcome unknown, the
  // copy may hold a commit its changelog never got), with the activation's claim and
  // `changelog_offset` noted for the next activation to check; kDrop drops them.
  absl::Status Deactivate(std::string_view name, KeepLocalCopy keep, int64_t changelog_offset = -1);
  // Drops a partition's local copy (not active).
  absl::Status DropLocalCopy(std::string_view name);

  // Rebuilds a partition that is not active from its changelog into fresh, empty families: `feed` runs
  // a ChangelogReplayer over the log with the sink it is given (a ChangelogRestore: snapshot by SST
  // ingestion, tail as writes). On success the partition is a clean local copy, to be activated with
  // use_local_copy; on failure its families are dropped.
  absl::Status Restore(const PartitionLayout& layout,
                       const std::function<absl::Status(ChangelogReplayer::Sink* sink)>& feed);
  // Brings a clean local copy (not active) up to date with its changelog's tail: `feed` runs a
  // ChangelogReplayer started from the copy's claim (ChangelogReplayer(ClaimId, Sink*)) from the offset
  // noted at Deactivate, and the sink writes the batches that count onto the copy. On success the copy
  // is clean, to be activated with use_local_copy; on failure (kAborted: the copy is stale) it is
  // dropped, and the partition is to be restored with Restore. kFailedPrecondition: no clean copy with
  // this layout.
  absl::Status CatchUp(const PartitionLayout& layout,
                       const std::function<absl::Status(ChangelogReplayer::Sink* sink)>& feed);

  // The active partition, or null.
  Partition* Find(std::string_view name) const;
  std::vector<std::string> ActiveNames() const;

  // Recovers every partition from a background error: DB::Resume, and when RocksDB cannot resume in
  // place (a fatal WAL or SST write error), closes and reopens the DB (replaying its WAL) while every
  // partition's calls are refused with kUnavailable; each store then checks it is the same store and
  // goes on, its in-memory leases kept. Every partition's Store::Resume calls this. kUnavailable while
  // the fault lasts (retry later); kDataLoss when the reopened directory is not this set's DB any more
  // (deleted, replaced, an active partition's family gone: a reopen never creates, and nothing runs
  // until an operator acts); kFailedPrecondition once closed. Family handles taken before a reopen are
  // invalid after it: take them from Partition::family() per use, and never hold one across a call
  // that may wait. A reopen waits for every store call in progress, so a commit hook must not call the
  // set or a partition (the hook's note in ActivateOptions).
  absl::Status Resume();
  PartitionSetStats GetStats() const;
  // Prometheus text: every active partition's Stats with a `partition` label, then the set's counters.
  std::string ToPrometheus() const;
  // Closes every active partition's Store without deactivating it, and the DB. Their copies stay on
  // disk marked active, so they come back unclean: the set cannot tell whether each one's changelog got
  // every commit. Deactivate (kKeep) first to keep clean copies. Idempotent.
  absl::Status Close();

  rocksdb::DB* db() const;

  class Impl;

 private:
  friend struct engine::PartitionSetAccess;
  explicit PartitionSet(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace idem

#endif  // IDEM_PARTITION_SET_H_
