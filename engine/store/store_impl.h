// Store::Impl coordinates the engine units: key locks, record codec, token source, expiry filter,
// latency histograms and the maintenance thread. It holds no policy of its own beyond the
// reserve/commit state machine.
#ifndef IDEM_ENGINE_STORE_STORE_IMPL_H_
#define IDEM_ENGINE_STORE_STORE_IMPL_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "engine/db/db_lifecycle.h"
#include "engine/db/disk_guard.h"
#include "engine/db/expiry_maintenance.h"
#include "engine/records/expiry_filter.h"
#include "engine/records/record.h"
#include "engine/records/store_metadata.h"
#include "engine/store/hold_table.h"
#include "engine/store/key_locks.h"
#include "engine/store/memory_tables.h"
#include "engine/store/store_registry.h"
#include "engine/store/token_source.h"
#include "idem/latency_histogram.h"
#include "idem/store.h"
#include "rocksdb/db.h"
#include "rocksdb/listener.h"
#include "util/periodic.h"
#include "util/sync.h"

namespace idem {

class Store::Impl {
 public:
  struct Counters {
    std::atomic<uint64_t> reserved{0}, duplicate{0}, in_flight{0}, conflicts{0}, takeovers{0}, waits{0}, reopens{0};
    std::atomic<uint64_t> committed{0}, released{0}, extended{0}, lease_lost{0}, fenced{0};
    std::atomic<uint64_t> fast_path_hits{0}, corrupt_records{0}, storage_errors{0};
  };

  Impl(const Options& options, std::shared_ptr<engine::ExpiryFilterFactory> filter);
  ~Impl();

  // Finishes construction: takes the DB's lifecycle, reads (or, when allowed, creates) the store's
  // metadata, starts the background threads. `directory` is empty for Attach.
  absl::Status Start(std::unique_ptr<engine::DbLifecycle> lifecycle, std::unique_ptr<engine::StoreClaim> claim,
                     const std::string& directory, engine::IfMissing if_missing);
  // Before Start: use `guard` (shared with other stores, measured by its owner) instead of a guard and
  // a watch thread of this store's own.
  void ShareDiskGuard(std::shared_ptr<engine::DiskGuard> guard) {
    disk_guard_ = std::move(guard);
    shared_disk_guard_ = true;
  }
  // Runs `fn` while no commit hook runs: a snapshot cut inside it is ordered with the hook's batches.
  void WithCommitOrder(const std::function<void()>& fn) {
    util::MutexLock order(&commit_order_mu_);
    fn();
  }

  absl::StatusOr<Reservation> Reserve(std::string_view id, const ReserveOptions& options);
  absl::Status Commit(std::string_view id, uint64_t token, std::string_view result, rocksdb::WriteBatch* effects);
  absl::Status ValidateCommit(std::string_view result, const rocksdb::WriteBatch* effects) const;
  absl::Status Release(std::string_view id, uint64_t token);
  absl::Status Extend(std::string_view id, uint64_t token);
  std::vector<absl::StatusOr<Reservation>> ReserveBatch(absl::Span<const std::string_view> ids,
                                                        absl::Span<const std::optional<uint64_t>> fingerprints);
  std::vector<absl::Status> CommitBatch(absl::Span<const CommitRequest> requests, int64_t tag);
  absl::StatusOr<std::vector<InDoubtReservation>> InDoubt(size_t limit) const;
  absl::StatusOr<RecordInfo> Peek(std::string_view id) const;
  absl::Status Forget(std::string_view id);
  absl::Status CompactExpired();
  Stats GetStats() const;
  uint64_t token_floor() const { return token_floor_; }
  std::string RecordKeyOf(std::string_view id) const {
    return std::string(engine::RecordKey(layout_, id).view());  // layout_: fixed after Start
  }
  absl::Status Health() const;
  absl::Status Resume();
  absl::Status Close();

  rocksdb::DB* db() const { return lifecycle_ ? lifecycle_->db() : nullptr; }
  engine::DbLifecycle* lifecycle() const { return lifecycle_.get(); }
  // The DB this store's claim names was reopened by its owner (a PartitionSet): the claim follows it,
  // or the next store attached to the new DB would be taken for one on another instance of it.
  void RebindClaim(const void* db, const std::string& column_family) {
    if (claim_ != nullptr) claim_->Bind(db, column_family);
  }
  rocksdb::ColumnFamilyHandle* family(std::string_view name) const {
    Operation op(*lifecycle_);
    if (!op.ok()) return nullptr;
    rocksdb::ColumnFamilyHandle* h = lifecycle_->handle(name);
    return h == lifecycle_->records() ? nullptr : h;
  }
  rocksdb::ColumnFamilyHandle* cf() const { return lifecycle_ ? lifecycle_->records() : nullptr; }

  // One maintenance pass (also run by the background thread): flush a memtable whose records have all
  // expired, compact SST files whose records have all expired, nudge RocksDB's periodic compaction.
  absl::Status RunMaintenance();

 private:
  // What a read found for one ID.
  struct Lookup {
    bool found = false;
    std::string value;  // the encoded record, when found
  };

  // How a Commit/Release/Extend finds the caller's reservation.
  struct Hold {
    bool done = false;                    // already committed with this token
    std::optional<uint64_t> fingerprint;  // carried into the done record
    bool in_table = false;                // the hold table keeps it (else only a record in RocksDB)
    engine::Record record;                // the record, when !in_table && !done
  };
  // One reading of the store's clocks, taken once per call: store time for deadlines, the monotonic
  // reading for lease ends.
  struct Instant {
    absl::Time now;
    absl::Duration monotonic;
  };
  // What a new reservation replaced (Reservation::takeover and its companions).
  struct Replaced {
    bool takeover = false;
    bool holder_gone = false;
    uint64_t previous_token = 0;
  };

  absl::Status CheckId(std::string_view id) const;
  // DataLoss naming `id` when the stored bytes do not decode; Peek does not count it as a corrupt
  // record seen by an operation.
  absl::StatusOr<engine::Record> DecodeStored(std::string_view id, std::string_view bytes, bool count_corrupt) const;
  // The done record a Commit of `token` writes at `now`; `result` must outlive it.
  engine::Record DoneRecord(uint64_t token, std::optional<uint64_t> fingerprint, std::string_view result,
                            absl::Time now) const;
  // Reads the metadata of the store in `db` (default column family) and makes its token source.
  absl::Status LoadMetadata(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* records, engine::IfMissing if_missing);
  absl::Status CheckToken(uint64_t token) const;
  absl::Status CheckCommit(const CommitRequest& request) const;
  // REQUIRES: the store is pinned open. kInvalidArgument when the effects write idem's own data.
  absl::Status CheckEffectsOf(const CommitRequest& request) const;
  // Reads `id`, first without I/O (filters, memtable, cached blocks), then from disk only if needed.
  absl::StatusOr<Lookup> Read(const engine::IdKey& key, bool count_fast_path) const;
  // REQUIRES: stripe held. Answers Reserve from the recent-commit cache or the hold table; nullopt
  // when RocksDB must be read. Fills *replaced when an ended lease was dropped.
  std::optional<Reservation> AnswerFromMemory(const engine::IdKey& key, const std::optional<uint64_t>& fingerprint,
                                              const Instant& at, Replaced* replaced);
  // REQUIRES: stripe held. Decides from what was read; a kReserved verdict is recorded in the hold
  // table (durable reservations: also as a Put added to *batch). `lease`: this reservation's.
  absl::StatusOr<Reservation> Decide(const engine::IdKey& key, const std::optional<uint64_t>& fingerprint,
                                     absl::Duration lease, const Lookup& lookup, const Instant& at, Replaced replaced,
                                     rocksdb::WriteBatch* batch);
  // kConflict when both fingerprints are known and differ; counts it.
  std::optional<Reservation> ConflictOf(const std::optional<uint64_t>& wanted, const std::optional<uint64_t>& stored,
                                        absl::Time deadline, std::string_view result);
  // REQUIRES: stripe held. Finds the reservation `token` holds on the ID; kAborted if it holds none.
  absl::StatusOr<Hold> FindHold(const engine::IdKey& key, uint64_t token, std::string_view verb, const Instant& at);
  // The start of Release and Extend: the ID and token checked, the DB pinned, the ID's stripe locked,
  // the hold of `token` found and not yet committed; then `step(key, hold, at)` with all of it held.
  template <typename Step>
  absl::Status OnHold(std::string_view id, uint64_t token, std::string_view verb, Step&& step);
  // REQUIRES: stripe held. One check-and-reserve attempt (writing a durable reservation).
  absl::StatusOr<Reservation> ReserveLocked(const engine::IdKey& key, const std::optional<uint64_t>& fingerprint,
                                            absl::Duration lease, const Instant& at);
  absl::Status AbortedFor(std::string_view id, uint64_t token, std::string_view verb, std::string_view why);
  // REQUIRES: stripe held. Whether RocksDB holds a done record of the ID by `token` (then it is also put
  // in the recent-commit cache). The hold table asks it after an unknown outcome.
  bool CommitLanded(const engine::IdKey& key, uint64_t token);
  // REQUIRES: stripe held, the write succeeded. Moves the ID from reserved to done in memory.
  void NoteCommitted(const engine::IdKey& key, const CommitRequest& request, const engine::Record& done);
  absl::Status Write(rocksdb::WriteBatch* batch, std::string_view verb, std::string_view id);
  // Write for a batch that changes what is committed (Commit, CommitBatch, Forget): with a commit hook,
  // the write and the hook run under commit_order_mu_, so the hook sees the writes in WAL order.
  absl::Status WriteCommitted(rocksdb::WriteBatch* batch, std::string_view verb, std::string_view id, int64_t tag = -1);
  absl::Status StorageError(const rocksdb::Status& status, std::string_view context);
  // The store's clocks, read once (engine/store_time.h): every decision of a call uses this reading.
  Instant Clocks() const { return Instant{time_->Now(*clock_), time_->Monotonic(*clock_)}; }
  absl::Time Now() const { return Clocks().now; }

  // ---- Constant after construction ----
  const Options options_;
  const std::shared_ptr<Clock> clock_;
  const std::shared_ptr<engine::ExpiryFilterFactory> filter_;
  const std::shared_ptr<engine::StoreTime> time_;  // the filter's: one horizon for reads and expiry
  rocksdb::WriteOptions write_options_;
  rocksdb::ReadOptions reads_;
  rocksdb::ReadOptions no_io_reads_;  // filters, memtables and cached blocks only
  // Owns (Open) or borrows (Attach) the DB; decides whether a call may run (Pin).
  std::unique_ptr<engine::DbLifecycle> lifecycle_;
  std::string identity_;  // the store's identity, from its metadata: a reopen must find the same
  // Replaced only by a reopen, with the DB held exclusively.
  std::unique_ptr<engine::TokenSource> tokens_;
  engine::MetadataLocation metadata_;
  // How IDs become keys (engine/record_key.h), from the store's metadata.
  engine::KeyLayout layout_ = engine::KeyLayout::kHashed;
  // The first token this Store could issue, fixed at Start (a reopen keeps it): every token below it
  // was issued by an earlier process or an earlier Store on this DB, whose holders are gone.
  uint64_t token_floor_ = 0;

  // ---- Thread-safe on their own ----
  engine::KeyLocks locks_;
  // Taken after a stripe (never before one) by WriteCommitted when there is a commit hook.
  util::Mutex commit_order_mu_;
  // This process's reservations (Options::durable_reservations: also in RocksDB); stripes guarded by
  // the locks_ stripe.
  std::unique_ptr<engine::HoldTable> holds_;
  engine::RecentCommits recent_;
  mutable Counters counters_;
  LatencyHistogram reserve_latency_, commit_latency_;
  engine::ExpiryMaintenance expiry_;

  using Operation = engine::DbLifecycle::Pin;

  // ---- Background work (started last, stopped first) ----
  std::unique_ptr<util::Periodic> maintenance_;
  std::unique_ptr<util::Periodic> wal_sync_;
  std::mutex stop_mu_;  // one Close stops the background threads and ends the claim; a concurrent one waits
  // Watches free space and the directory (null when it cannot: an in-memory Env).
  std::shared_ptr<engine::DiskGuard> disk_guard_;
  bool shared_disk_guard_ = false;  // a PartitionSet's: measured by its thread, not ours
  std::unique_ptr<util::Periodic> disk_watch_;
  // This store's claim on its directory / column family in the process (engine/store_registry.h).
  std::unique_ptr<engine::StoreClaim> claim_;
};

}  // namespace idem

#endif  // IDEM_ENGINE_STORE_STORE_IMPL_H_
