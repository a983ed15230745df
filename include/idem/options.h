// idem/options.h — how a Store behaves and performs.
//
// Options are plain values copied into the Store at Open/Attach; changing an Options object afterwards has
// no effect on an open Store. Open validates them and refuses contradictions with InvalidArgument.
#ifndef IDEM_OPTIONS_H_
#define IDEM_OPTIONS_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "idem/clock.h"

namespace rocksdb {
class Env;
class WriteBatch;
struct ColumnFamilyOptions;
}  // namespace rocksdb

namespace idem {

// How RocksDB compacts the column family. All three remove expired records; they differ in cost.
enum class CompactionProfile {
  // Leveled compaction + idem's expiry filter: exact per-record expiry, predictable space. The default.
  kLeveled,
  // Universal compaction + the filter: less write amplification, full compactions need up to 2x space.
  kUniversal,
  // FIFO with a whole-file TTL: almost no compaction cost, but every lookup probes every file's filter,
  // so it only suits short TTLs (minutes to hours). Files are dropped by their real-time age, never early.
  kFifo,
};

// The memtable of the records column family.
enum class MemtableKind {
  // kHashSkipList for a store from Open (which owns the DB's options); kSkipList in
  // ColumnFamilyOptionsFor, for Attach callers, whose DB options are their own. The default.
  kAuto,
  // Hash buckets of skiplists, bucketed by a hash of the ID: an insert costs well under half of a
  // skiplist's (the sort is left to the flush, on a background thread). The DB must be opened with
  // allow_concurrent_memtable_write = false (Open does it; an Attach caller who asks for it must).
  kHashSkipList,
  // RocksDB's default skiplist, which allows concurrent memtable writes.
  kSkipList,
};

// A commit write that landed, as Options::commit_hook sees it.
struct CommittedWrite {
  // The batch as written: the caller's effects (if any) followed by the done markers of idem's records
  // column family, exactly the operations RocksDB applied atomically. Valid only during the call.
  const rocksdb::WriteBatch* batch = nullptr;
  // The sequence number RocksDB assigned to the batch's first operation; strictly increasing from one
  // call of the hook to the next.
  uint64_t sequence = 0;
  // The caller's tag for this write: CommitBatch's `tag` (e.g. the input position the batch covers up
  // to), -1 for a write without one (Commit, Forget). Opaque to the store.
  int64_t tag = -1;
};

struct Options {
  // ---- Behaviour ----

  // How long a committed ID is remembered; a redelivery within this window is a duplicate.
  // Must exceed `lease`. Default: 24 hours.
  absl::Duration ttl = absl::Hours(24);

  // How long a reservation holds before another worker may take it over. Choose it longer than the
  // slowest handler (or renew it with Extend) and shorter than the queue's redelivery delay.
  // Default: 30 seconds.
  absl::Duration lease = absl::Seconds(30);

  // The column family holding the records (created by Open if missing).
  std::string column_family = "idem";

  // true (default): Open creates the store (and missing parent directories) if there is none.
  // false: Open and Attach refuse with kNotFound unless the store already exists, so that a mistyped
  // path or column family cannot start an empty store that admits every remembered ID again.
  bool create_if_missing = true;

  // fsync the WAL before Reserve/Commit return. false (default): an acknowledged call survives a process
  // crash but the last writes may be lost on power failure. true: survives power failure, costs an fsync
  // per write (concurrent writers share them through RocksDB's group commit).
  bool sync = false;

  // With sync = false: fsync the WAL from a background thread this often (0 = never, RocksDB syncs only
  // when it switches WAL files). Bounds what a power failure can lose to about this window, at a small
  // cost per interval instead of per write; a process crash loses nothing either way.
  absl::Duration wal_sync_interval = absl::ZeroDuration();

  // Where reservations live.
  //  false (default): reservations live only in this process's memory (a sharded lease table).
  //    Reserve(new) is a filter probe plus a hash insert; Commit is the only write. If the process dies
  //    its leases die with it, which is right for a consumer whose effects go into the DB with Commit:
  //    its work did not commit and the queue redelivers. These leases end by Clock::Monotonic(), so a
  //    wall-clock step neither ends one early nor stretches it.
  //  true: reservations are also written to RocksDB (a write per Reserve). Choose it when handlers have
  //    effects outside the DB: a restarted process sees the reservations its predecessor left
  //    (InDoubt()), and the next Reserve of each takes it over at once and says so
  //    (Reservation::takeover, holder_gone), so the handler can check or compensate what the
  //    predecessor may have started. Within the process they behave as in-memory leases; their records
  //    carry wall-clock deadlines, as they must mean the same to the next process.
  bool durable_reservations = false;

  // Recently committed IDs kept in memory to answer hot duplicates without touching RocksDB.
  // 0 disables the cache. Memory is about (ID + result + 64) bytes per entry.
  size_t recent_commits_cache_entries = 1 << 16;

  // Upper bounds on input sizes; larger inputs are refused with InvalidArgument before anything is written.
  size_t max_id_bytes = 512;
  size_t max_result_bytes = 64 << 10;

  // Time source for leases, retention and expiry. null: SystemClock().
  std::shared_ptr<Clock> clock;

  // ---- Ownership (a partition whose owner changes: see docs/SCALING.md) ----

  // Every token at or below the floor belongs to an earlier owner of this store's data. The store issues
  // only tokens above it; Commit, Release and Extend with a token below TokenFloor() (which is above
  // this floor) answer kAborted, effects not written, whatever the store holds for the ID; a
  // reservation found under it is taken over at once (Reservation::holder_gone). An owner that makes
  // its floor greater than every token an earlier owner can have issued (TokenRangeOfClaim) gets
  // tokens greater than every zombie's, so a downstream system that keeps the highest token it has seen
  // fences zombies too. 0 (default): only the store's own restarts are fenced (TokenFloor()).
  uint64_t token_floor = 0;
  // Every token the store issues is below it; 0 (default): no limit but the token space. An owner whose
  // successor's floor is known (TokenRangeOfClaim: the next claim's floor) sets it there, so that
  // it can never issue a token its successor will issue too; past it Reserve answers kFailedPrecondition
  // (the tokens are used up), nothing reserved. Must be above token_floor + 1.
  uint64_t token_limit = 0;

  // The column families (ColumnFamilyHandle::GetID(), which survives reopens) that Commit's effects may
  // write. nullopt (default): any column family but idem's own records and metadata key. Set: only
  // these, and only Put, Delete and SingleDelete; Merge, DeleteRange, wide-column and blob writes, and
  // LogData are refused too (kInvalidArgument, nothing written), so that every committed batch is a
  // list of plain key writes that a changelog can carry and a restore can apply anywhere.
  std::optional<std::vector<uint32_t>> effect_column_families;

  // Called after each commit write that landed (Commit, CommitBatch, and Forget, which deletes a
  // record), in the order of the writes in the WAL, with the written batch and its sequence number:
  // the feed of a changelog. Not called for a write that failed (its outcome is unknown, and the
  // store's local data may then hold a write the hook never saw). Commits of a store with a hook are
  // serialized (the write and the hook run under one lock), so the hook must be quick (hand the batch
  // to a queue, copying what it keeps) and must not call into this store.
  std::function<void(const CommittedWrite&)> commit_hook;

  // ---- Performance ----

  // Bits per key of the memtable and SST filters: an ID never seen costs no data-block read.
  // 0 turns filters off (only for measuring the fast path). Default 10 (~1 % false positives).
  int bloom_bits_per_key = 10;

  CompactionProfile compaction = CompactionProfile::kLeveled;

  MemtableKind memtable = MemtableKind::kAuto;

  // Size of the LRU block cache for this column family's data blocks.
  size_t block_cache_bytes = 64 << 20;

  // Memtable size; larger memtables keep more recent IDs answerable without a disk read.
  size_t write_buffer_size = 64 << 20;

  // How often a background thread looks for files whose records have all expired, and for an idle store
  // whose expired records would otherwise never be compacted away (RocksDB 7.8 re-evaluates its periodic
  // compaction only on writes). Zero disables the thread; CompactExpired() still works.
  absl::Duration maintenance_interval = absl::Seconds(2);

  // Free space the store keeps on its file system. Below it, writes are refused with kUnavailable
  // ("disk nearly full") and Health() says so, before RocksDB can run into a full disk (on Debian's
  // RocksDB a full disk under the WAL aborts the process); the refusal ends by itself when space
  // returns, and a Processor pauses and resumes with it. -1 (default): room to flush every memtable
  // the DB can hold, at least 64 MiB: write_buffer_size x max_write_buffer_number of every column
  // family, the caller's own included (Store::Open's families, or the other families of an attached
  // store's DB), or the DB's write buffer budget when it has one (a PartitionSet's). The records family
  // keeps up to 4 memtables: 264 MiB with the default write buffer and no family of the caller's. 0: off.
  int64_t min_free_disk_bytes = -1;

  // ---- Environment ----

  // null: RocksDB's default Env, with WAL and MANIFEST write errors reported as not retryable (a
  // retryable WAL error aborts Debian's RocksDB; see engine/wal_error_fs.h). Tests pass in-memory or
  // fault-injecting Envs, which are used as given. Must outlive the Store.
  rocksdb::Env* env = nullptr;
};

// The column family options idem needs (expiry filter, filters, table format, compaction profile,
// memtable). Open applies them itself; a caller who owns the DB and uses Store::Attach must pass them
// for the idem column family on *every* DB::Open, or expiry silently stops (Attach checks and refuses
// that case). They configure RocksDB's skiplist memtable unless options.memtable is kHashSkipList:
// then the DB must be opened with allow_concurrent_memtable_write = false (or RocksDB refuses the
// open), and the column family has a prefix extractor, so an iterator over it needs
// ReadOptions::total_order_seek = true to see every record.
rocksdb::ColumnFamilyOptions ColumnFamilyOptionsFor(const Options& options);

}  // namespace idem

#endif  // IDEM_OPTIONS_H_
