// Expiry maintenance: what removes expired records from disk beyond RocksDB's own compactions.
//
// RocksDB 7.8 drops expired records only when a flush or compaction happens to run the filter, and on
// an idle DB it never re-evaluates periodic compaction. This unit decides, from the store's time and
// from each SST file's deadline range (table properties written by DeadlineCollector), when to act:
//   - a memtable whose records have all expired is flushed (the filter drops them all);
//   - SST files whose records have all expired have their key range compacted, bottom level included;
//   - every 10 minutes a nudge (SuggestCompactRange over no key) makes RocksDB look at file ages again;
//   - CompactExpired removes every expired record now, retrying once when a background compaction that
//     began under an earlier time left some behind.
// It holds no DB: each pass is given the DB and column family (pinned open by the caller), so one
// maintenance thread could serve many stores.
//
// Thread safety: NoteDeadline from any thread; the passes from one thread at a time per store.
#ifndef IDEM_ENGINE_DB_EXPIRY_MAINTENANCE_H_
#define IDEM_ENGINE_DB_EXPIRY_MAINTENANCE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "engine/records/store_time.h"
#include "idem/options.h"
#include "rocksdb/db.h"

namespace idem::engine {

class ExpiryMaintenance {
 public:
  // Turns a RocksDB error of a pass into the store's status (counting it, marking the store unhealthy).
  using OnError = std::function<absl::Status(const rocksdb::Status&, std::string_view context)>;

  ExpiryMaintenance(CompactionProfile profile, std::shared_ptr<StoreTime> time, OnError on_error)
      : profile_(profile), time_(std::move(time)), on_error_(std::move(on_error)) {}

  // A record with this deadline was written to the memtable.
  void NoteDeadline(int64_t deadline_us);

  // REQUIRES: db and cf pinned open. Flushes, compacts everything, and checks that no file still holds a
  // record that had expired when it was called.
  absl::Status CompactExpired(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf);
  // REQUIRES: db and cf pinned open. One background pass: the expired memtable, the expired files.
  absl::Status RunPass(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf);
  // REQUIRES: db and cf pinned open. The periodic-compaction nudge, at most every 10 minutes.
  void Nudge(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf);

 private:
  void ForgetMemtable();

  const CompactionProfile profile_;
  const std::shared_ptr<StoreTime> time_;
  const OnError on_error_;
  // Upper bound of the deadlines written since the last flush (only grows between flushes), so a pass
  // can tell that every record in the memtable has expired.
  std::atomic<int64_t> memtable_max_deadline_us_{std::numeric_limits<int64_t>::min()};
  std::atomic<bool> memtable_dirty_{false};
  absl::Time last_nudge_ = absl::InfinitePast();  // the maintenance thread only
};

}  // namespace idem::engine

#endif  // IDEM_ENGINE_DB_EXPIRY_MAINTENANCE_H_
