// Store::Impl coordinates the engine units: key locks, record codec, token source, expiry filter,
// latency histograms and the maintenance thread. It holds no policy of its own beyond the
// reserve/commit state machine.
#ifndef IDEM_ENGINE_STORE_IMPL_H_
#define IDEM_ENGINE_STORE_IMPL_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "engine/sync.h"
#include "engine/expiry_filter.h"
#include "engine/key_locks.h"
#include "engine/latency_histogram.h"
#include "engine/memory_tables.h"
#include "engine/periodic.h"
#include "engine/record.h"
#include "engine/token_source.h"
#include "idem/store.h"
#include "rocksdb/db.h"
#include "rocksdb/listener.h"

namespace idem {

class Store::Impl {
 public:
  struct Counters {
    std::atomic<uint64_t> reserved{0}, duplicate{0}, in_flight{0}, takeovers{0};
    std::atomic<uint64_t> committed{0}, released{0}, extended{0}, lease_lost{0};
    std::atomic<uint64_t> fast_path_hits{0}, corrupt_records{0}, storage_errors{0};
  };

  // Tracks RocksDB's background-error state (installed on DBs that Open owns).
  class HealthListener : public rocksdb::EventListener {
   public:
    void OnBackgroundError(rocksdb::BackgroundErrorReason reason, rocksdb::Status* status) override;
    void OnErrorRecoveryEnd(const rocksdb::BackgroundErrorRecoveryInfo& info) override;
    absl::Status error() const;
    void Set(absl::Status status);

   private:
    mutable engine::Mutex mu_;
    absl::Status error_ ABSL_GUARDED_BY(mu_);
  };

  Impl(const Options& options, rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf,
       std::shared_ptr<engine::ExpiryFilterFactory> filter);
  ~Impl();

  // Finishes construction: tokens, maintenance thread. For Open, also takes ownership of the DB.
  absl::Status Start(std::unique_ptr<rocksdb::DB> owned_db, std::vector<rocksdb::ColumnFamilyHandle*> owned_handles,
                     std::shared_ptr<HealthListener> health);

  absl::StatusOr<Reservation> Reserve(std::string_view id);
  absl::Status Commit(std::string_view id, uint64_t token, std::string_view result, rocksdb::WriteBatch* effects);
  absl::Status Release(std::string_view id, uint64_t token);
  absl::Status Extend(std::string_view id, uint64_t token);
  std::vector<absl::StatusOr<Reservation>> ReserveBatch(absl::Span<const std::string_view> ids);
  std::vector<absl::Status> CommitBatch(absl::Span<const CommitRequest> requests);
  absl::StatusOr<std::vector<InDoubtReservation>> InDoubt(size_t limit) const;
  absl::StatusOr<RecordInfo> Peek(std::string_view id) const;
  absl::Status CompactExpired();
  Stats GetStats() const;
  absl::Status Health() const;
  absl::Status Resume();
  absl::Status Close();

  rocksdb::DB* db() const { return db_; }
  rocksdb::ColumnFamilyHandle* cf() const { return cf_; }

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
    bool in_memory = false;               // the lease is in leases_ (else a durable record)
    engine::Record record;                // the durable record, when !in_memory && !done
  };

  absl::Status CheckId(std::string_view id) const;
  absl::Status CheckToken(uint64_t token) const;
  absl::Status CheckCommit(const CommitRequest& request) const;
  // Reads `id`, first without I/O (filters, memtable, cached blocks), then from disk only if needed.
  absl::StatusOr<Lookup> Read(std::string_view id, bool count_fast_path) const;
  // REQUIRES: stripe `shard` held. Answers Reserve from the recent-commit cache or the lease table;
  // nullopt when RocksDB must be read. Sets *takeover when an expired in-memory lease was dropped.
  std::optional<Reservation> AnswerFromMemory(size_t shard, std::string_view id, absl::Time now, bool* takeover);
  // REQUIRES: stripe `shard` held. Decides from what was read; a kReserved verdict is recorded in the
  // lease table, or (durable reservations) as a Put added to *batch.
  absl::StatusOr<Reservation> Decide(size_t shard, std::string_view id, const Lookup& lookup, absl::Time now,
                                     bool takeover, rocksdb::WriteBatch* batch);
  // REQUIRES: stripe `shard` held. Finds the reservation `token` holds on `id`; kAborted if it holds none.
  absl::StatusOr<Hold> FindHold(size_t shard, std::string_view id, uint64_t token, std::string_view verb,
                                absl::Time now);
  absl::Status AbortedFor(std::string_view id, uint64_t token, std::string_view verb, std::string_view why);
  // REQUIRES: stripe held, the write succeeded. Moves the ID from reserved to done in memory.
  void NoteCommitted(size_t shard, const CommitRequest& request, const engine::Record& done);
  absl::Status Write(rocksdb::WriteBatch* batch, std::string_view verb, std::string_view id);
  absl::Status StorageError(const rocksdb::Status& status, std::string_view context);
  void NoteMemtableDeadline(int64_t deadline_us);
  void NudgePeriodicCompaction();

  // ---- Constant after construction ----
  const Options options_;
  const std::shared_ptr<Clock> clock_;
  rocksdb::DB* const db_;
  rocksdb::ColumnFamilyHandle* const cf_;
  const std::shared_ptr<engine::ExpiryFilterFactory> filter_;
  rocksdb::WriteOptions write_options_;
  std::unique_ptr<engine::TokenSource> tokens_;
  std::shared_ptr<HealthListener> health_;
  const bool durable_reservations_;
  std::unique_ptr<rocksdb::DB> owned_db_;
  std::vector<rocksdb::ColumnFamilyHandle*> owned_handles_;

  // ---- Thread-safe on their own ----
  engine::KeyLocks locks_;
  // Shards guarded by the matching locks_ stripe.
  engine::LeaseTable leases_;
  engine::RecentCommits recent_;
  mutable Counters counters_;
  engine::LatencyHistogram reserve_latency_, commit_latency_;
  // Upper bound of the deadlines written since the last maintenance flush (conservative: only grows
  // between flushes), so maintenance can tell that every record in the memtable has expired.
  std::atomic<int64_t> memtable_max_deadline_us_;
  std::atomic<bool> memtable_dirty_{false};

  // ---- Lifecycle: operations hold it shared, Close exclusively ----
  // Pins the store open for one operation. `closing_` is checked first because glibc's rwlock prefers
  // readers: without it a steady stream of operations would keep Close waiting forever.
  class Operation {
   public:
    explicit Operation(const Impl* impl) : impl_(impl) {
      if (impl_->closing_.load(std::memory_order_acquire)) return;
      impl_->lifecycle_mu_.ReaderLock();
      if (impl_->closed_) {
        impl_->lifecycle_mu_.ReaderUnlock();
        return;
      }
      open_ = true;
    }
    ~Operation() {
      if (open_) impl_->lifecycle_mu_.ReaderUnlock();
    }
    Operation(const Operation&) = delete;
    Operation& operator=(const Operation&) = delete;
    bool open() const { return open_; }

   private:
    const Impl* const impl_;
    bool open_ = false;
  };
  std::atomic<bool> closing_{false};
  mutable engine::SharedMutex lifecycle_mu_;
  bool closed_ = false;  // guarded by lifecycle_mu_
  absl::Status close_status_ ABSL_GUARDED_BY(lifecycle_mu_);

  // ---- Background work (started last, stopped first) ----
  absl::Time last_nudge_ = absl::InfinitePast();  // maintenance thread only
  std::unique_ptr<engine::Periodic> maintenance_;
  std::unique_ptr<engine::Periodic> wal_sync_;
};

}  // namespace idem

#endif  // IDEM_ENGINE_STORE_IMPL_H_
