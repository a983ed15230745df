// Keeps RocksDB from meeting a full disk. On Debian's assertion-enabled RocksDB a WAL write that fails
// with "no space" is marked retryable, and the auto-recovery that follows aborts the process
// (WritableFileWriter's previous-error assertion), before any call returns an error. So, as
// Elasticsearch's flood-stage watermark and etcd's space quota do, the store stops writing while the
// file system still has room: below `reserve` free bytes, writes are refused with kUnavailable ("disk
// nearly full") and Health() says so, so the consumer pauses; when space returns, the refusal ends by
// itself. The reserve is what RocksDB needs to finish what is already under way (flushing the
// memtables it holds, compacting them) after the store stops writing.
//
// The guard also notices a store directory that was deleted or replaced while open (writes into
// unlinked files would be lost at the next restart): writes are refused, and Health() is kDataLoss.
//
// Cost on the write path: one atomic add and compare; statvfs runs from the background (Measure) and
// inline only when the bytes written since the last measurement could have used up the headroom.
//
// Thread safety: every method may be called from any thread.
#ifndef IDEM_ENGINE_DB_DISK_GUARD_H_
#define IDEM_ENGINE_DB_DISK_GUARD_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "rocksdb/db.h"
#include "util/sync.h"

namespace idem::engine {

class DiskGuard {
 public:
  // nullptr when the guard cannot watch `path` (it does not exist on the real file system, e.g. an
  // in-memory Env) or `reserve` is 0.
  static std::unique_ptr<DiskGuard> For(const std::string& path, uint64_t reserve);

  // Before writing about `bytes`: OK, or why not (kUnavailable: disk nearly full, or the directory is
  // gone; Health() tells the two apart).
  absl::Status CheckWrite(size_t bytes);
  // The guard's last verdict, re-measured first.
  absl::Status Health();
  // Measures now (statvfs, stat of the directory); the background thread calls it periodically.
  void Measure();

  uint64_t reserve() const { return reserve_; }
  uint64_t free_bytes() const { return free_bytes_.load(std::memory_order_relaxed); }
  uint64_t refusals() const { return refusals_.load(std::memory_order_relaxed); }

 private:
  DiskGuard(std::string path, uint64_t reserve, uint64_t dev, uint64_t ino);

  const std::string path_;
  const uint64_t reserve_;
  const uint64_t dev_, ino_;  // the directory's identity at open

  // Bytes the store may still write before the guard must measure again: a fraction of the headroom
  // above the reserve, because RocksDB writes each byte several times (WAL, flush, compaction).
  std::atomic<int64_t> budget_{0};
  std::atomic<bool> refusing_{false};
  std::atomic<uint64_t> free_bytes_{0};
  std::atomic<uint64_t> refusals_{0};
  mutable util::Mutex mu_;
  absl::Status verdict_ ABSL_GUARDED_BY(mu_);
};

// The reserve Options ask for: `min_free_disk_bytes` if set (>= 0), else room to flush every memtable
// the DB can hold (`memtable_capacity`, MemtableCapacity), at least 64 MiB. Not a proof that RocksDB's
// background work fits (a compaction can need more): the guard makes a full disk rare, the WAL error
// wrapper makes it safe.
uint64_t DiskReserveFor(int64_t min_free_disk_bytes, uint64_t memtable_capacity);

// What the memtables of `db` can hold before RocksDB must flush them, every column family counted (the
// caller's own too: a flush of theirs needs the disk as much as one of ours): the write buffer
// manager's budget when the DB has one, else the sum of write_buffer_size x max_write_buffer_number
// over its column families. `known`: handles whose options are read from the DB; the options of the
// other families come from the DB's OPTIONS file, or are taken as RocksDB's defaults (64 MiB x 2) when
// it cannot be read.
uint64_t MemtableCapacity(rocksdb::DB* db, const std::vector<rocksdb::ColumnFamilyHandle*>& known);

}  // namespace idem::engine

#endif  // IDEM_ENGINE_DB_DISK_GUARD_H_
