// Where a store keeps its reservations ("holds"): the two modes of Options::durable_reservations.
//
// Both keep every reservation this process made in a lease table striped like the key locks
// (engine/memory_tables.h), and leases end by the clock's monotonic reading:
//
//  - Memory holds (durable = false): the table is all there is; Reserve(new) writes nothing and Commit is
//    the only write.
//  - Durable holds (durable = true): a reservation is also a record in RocksDB, written before Reserve
//    returns, so a restarted process finds it (InDoubt) and takes it over. Kept in the table as well, so
//    that Commit, Release and Extend of this process's reservations never read back what was written.
//    A record found in RocksDB but not in the table was left by an earlier process (or by a write whose
//    outcome was unknown); the store reads and decides it.
//
// After a Commit whose outcome was unknown, a lease is believed only once RocksDB has been asked whether
// that commit landed.
//
// Thread safety: every method REQUIRES the caller to hold the KeyLocks stripe `key.stripe`.
#ifndef IDEM_ENGINE_STORE_HOLD_TABLE_H_
#define IDEM_ENGINE_STORE_HOLD_TABLE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>

#include "absl/time/time.h"
#include "engine/store/key_locks.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"

namespace idem::engine {

// A reservation as a hold table knows it.
struct HeldLease {
  uint64_t token = 0;
  absl::Time deadline;  // lease end as reported to callers (store time)
  std::optional<uint64_t> fingerprint;
  bool ended = false;  // the lease has run out (a Commit may still succeed: nobody took over yet)
};

class HoldTable {
 public:
  virtual ~HoldTable() = default;

  // Whether a new reservation's batch must be written before Reserve returns (and Release, Extend write).
  virtual bool persists_holds() const = 0;

  // REQUIRES: the table holds no hold for the ID (Find found none, or it was dropped).
  // Records a new reservation whose lease lasts `lease` (ending at hold.deadline, and at
  // monotonic_now + lease on the monotonic clock); durable holds add its record to `batch` (for `cf`,
  // under `record_key`).
  virtual void Hold(const IdKey& key, const HeldLease& hold, absl::Duration lease, absl::Duration monotonic_now,
                    rocksdb::ColumnFamilyHandle* cf, const rocksdb::Slice& record_key, rocksdb::WriteBatch* batch) = 0;
  // The hold this table keeps for the ID, nullopt when none.
  virtual std::optional<HeldLease> Find(const IdKey& key, absl::Duration monotonic_now) = 0;
  // REQUIRES: Find found the hold. Its lease now ends at `deadline`, one Options::lease after
  // monotonic_now. Durable holds: the caller writes the renewed record.
  virtual void Renew(const IdKey& key, absl::Time deadline, absl::Duration monotonic_now) = 0;
  // The hold ends (released, committed, taken over, forgotten, or its write failed). Whether there was one.
  virtual bool Drop(const IdKey& key) = 0;
  // A Commit under the hold failed with an unknown outcome: it may have reached the WAL.
  virtual void CommitOutcomeUnknown(const IdKey& key) = 0;
};

// Whether RocksDB holds a done record of the ID committed with `token` (and, if so, remembers it where
// the store answers duplicates from). Asked after a Commit whose outcome was unknown.
using CommitLanded = std::function<bool(const IdKey& key, uint64_t token)>;

// `lease`: Options::lease, what Renew extends by. `landed` must outlive the table.
std::unique_ptr<HoldTable> NewHoldTable(bool durable, absl::Duration lease, CommitLanded landed);

}  // namespace idem::engine

#endif  // IDEM_ENGINE_STORE_HOLD_TABLE_H_
