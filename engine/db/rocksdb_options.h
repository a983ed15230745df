// Translation of idem::Options into RocksDB options: the recommended configuration measured in
// docs/ROCKSDB.md (filters resident, memtable bloom, hash-indexed data blocks, dynamic level sizes, periodic
// compaction so the expiry filter reaches the bottom level).
#ifndef IDEM_ENGINE_DB_ROCKSDB_OPTIONS_H_
#define IDEM_ENGINE_DB_ROCKSDB_OPTIONS_H_

#include <memory>
#include <string_view>

#include "absl/status/status.h"
#include "engine/records/expiry_filter.h"
#include "idem/options.h"
#include "rocksdb/options.h"

namespace idem::engine {

// DB-wide options for a DB that Store::Open owns.
rocksdb::DBOptions DBOptionsFor(const Options& options);

// The records column family of a DB that Store::Open (or a PartitionSet) owns: ColumnFamilyOptionsFor,
// with the memtable that kAuto means there (the hash memtable; DBOptionsFor allows it). `cache`: a block
// cache shared with other column families, instead of one of options.block_cache_bytes of its own.
rocksdb::ColumnFamilyOptions OwnedColumnFamilyOptionsFor(const Options& options,
                                                         std::shared_ptr<rocksdb::Cache> cache = nullptr);

// What options.memtable means for a DB that Store::Open owns (`owned`) or a caller's DB.
MemtableKind ResolvedMemtable(const Options& options, bool owned);

// InvalidArgument unless 0 < lease < ttl; `what` names the lease in the message ("lease", ...). The one
// lease check: Options, ReserveOptions::lease and idemctl tune all use it.
absl::Status CheckLease(absl::Duration lease, absl::Duration ttl, std::string_view what);

// InvalidArgument naming the first contradiction (lease >= ttl, sizes out of range, ...).
absl::Status ValidateOptions(const Options& options);

// What the options configure a column family for.
RetentionShape ShapeOf(const Options& options);

// kFailedPrecondition when a column family opened for `opened_for` (its filter factory's shape), running
// with `current`, does not fit `options`: another ttl, lease or profile, or FIFO settings that drop IDs early.
absl::Status CheckColumnFamilyFor(const rocksdb::ColumnFamilyOptions& current, const RetentionShape& opened_for,
                                  const Options& options, const std::string& name);

// The clock the options name, or SystemClock().
std::shared_ptr<Clock> ClockOf(const Options& options);

}  // namespace idem::engine

#endif  // IDEM_ENGINE_DB_ROCKSDB_OPTIONS_H_
