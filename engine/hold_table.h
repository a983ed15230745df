// Where a store keeps its reservations ("holds"): the two modes of Options::durable_reservations as two
// implementations of one interface, so that the reserve/commit state machine never asks which mode it
// is in.
//
//  - Durable holds (NewDurableHolds): a reservation is a record in RocksDB, written before Reserve
//    returns, so a restarted process finds it (InDoubt) and it stays in flight until its lease ends. The
//    table itself keeps nothing: Find never finds, and the store reads the record instead.
//  - Memory holds (NewMemoryHolds): a reservation is a lease in a table striped like the key locks
//    (engine/memory_tables.h); Reserve(new) writes nothing and Commit is the only write. Leases end by
//    the clock's monotonic reading. After a Commit whose outcome was unknown, the lease is believed only
//    once RocksDB has been asked whether that commit landed.
//
// Thread safety: every method REQUIRES the caller to hold the KeyLocks stripe `stripe` of the ID.
#ifndef IDEM_ENGINE_HOLD_TABLE_H_
#define IDEM_ENGINE_HOLD_TABLE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>

#include "absl/time/time.h"
#include "engine/store_time.h"
#include "idem/clock.h"
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

  // Whether a new reservation's batch must be written before Reserve returns.
  virtual bool persists_holds() const = 0;
  // Every reading of store time goes through here first (memory holds advance the monotonic clock).
  virtual void ObserveTime() const = 0;

  // Records a new reservation of `id` whose lease lasts `lease` (ending at hold.deadline); durable holds
  // add its record to `batch` (for column family `cf`).
  virtual void Hold(size_t stripe, std::string_view id, const HeldLease& hold, absl::Duration lease,
                    rocksdb::ColumnFamilyHandle* cf, rocksdb::WriteBatch* batch) = 0;
  // The hold this table keeps for `id` (nullopt when none, and always for durable holds).
  virtual std::optional<HeldLease> Find(size_t stripe, std::string_view id) = 0;
  // REQUIRES: Find found the hold. Its lease now ends at `deadline` (and one lease from now, monotonic).
  virtual void Renew(size_t stripe, std::string_view id, absl::Time deadline) = 0;
  // The hold ends (released, committed, taken over, forgotten). Whether there was one.
  virtual bool Drop(size_t stripe, std::string_view id) = 0;
  // A Commit under the hold failed with an unknown outcome: it may have reached the WAL.
  virtual void CommitOutcomeUnknown(size_t stripe, std::string_view id) = 0;
};

std::unique_ptr<HoldTable> NewDurableHolds();

// Whether RocksDB holds a done record of `id` committed with `token` (and, if so, remembers it where
// the store answers duplicates from). Asked after a Commit whose outcome was unknown.
using CommitLanded = std::function<bool(size_t stripe, std::string_view id, uint64_t token)>;

// `time` and `clock`: the store's; `lease`: Options::lease, what Renew extends by. They and `landed`
// must outlive the table.
std::unique_ptr<HoldTable> NewMemoryHolds(const StoreTime* time, const Clock* clock, absl::Duration lease,
                                          CommitLanded landed);

}  // namespace idem::engine

#endif  // IDEM_ENGINE_HOLD_TABLE_H_
