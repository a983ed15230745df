#include "engine/db/rocksdb_options.h"

#include <algorithm>
#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"
#include "engine/db/wal_error_fs.h"
#include "engine/records/expiry_filter.h"
#include "engine/records/record_key.h"
#include "rocksdb/cache.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/memtablerep.h"
#include "rocksdb/slice_transform.h"
#include "rocksdb/table.h"

namespace idem {

namespace {
rocksdb::ColumnFamilyOptions RecordsColumnFamilyOptions(const Options& options, MemtableKind memtable,
                                                        std::shared_ptr<rocksdb::Cache> cache = nullptr);
}  // namespace

rocksdb::ColumnFamilyOptions ColumnFamilyOptionsFor(const Options& options) {
  return RecordsColumnFamilyOptions(options, engine::ResolvedMemtable(options, /*owned=*/false));
}

namespace engine {

MemtableKind ResolvedMemtable(const Options& options, bool owned) {
  if (options.memtable != MemtableKind::kAuto) return options.memtable;
  return owned ? MemtableKind::kHashSkipList : MemtableKind::kSkipList;
}

rocksdb::ColumnFamilyOptions OwnedColumnFamilyOptionsFor(const Options& options,
                                                         std::shared_ptr<rocksdb::Cache> cache) {
  return RecordsColumnFamilyOptions(options, ResolvedMemtable(options, /*owned=*/true), std::move(cache));
}

}  // namespace engine

namespace {

rocksdb::ColumnFamilyOptions RecordsColumnFamilyOptions(const Options& options, MemtableKind memtable,
                                                        std::shared_ptr<rocksdb::Cache> cache) {
  rocksdb::BlockBasedTableOptions table;
  if (options.bloom_bits_per_key > 0) {
    // Bloom for flushes and L0 (cheap to build on 2 cores), Ribbon below (~30 % smaller, same FP rate).
    table.filter_policy.reset(rocksdb::NewRibbonFilterPolicy(options.bloom_bits_per_key, 1));
  }
  table.whole_key_filtering = true;
  table.data_block_index_type = rocksdb::BlockBasedTableOptions::kDataBlockBinaryAndHash;
  table.data_block_hash_table_util_ratio = 0.75;
  // Filters and indexes stay outside the cache, resident for every open file: a never-seen ID then costs
  // no I/O at all. (Bounded-memory deployments with huge state would pin them in the cache instead.)
  table.cache_index_and_filter_blocks = false;
  table.optimize_filters_for_memory = true;
  table.prepopulate_block_cache = rocksdb::BlockBasedTableOptions::PrepopulateBlockCache::kFlushOnly;
  table.block_cache =
      cache ? std::move(cache) : rocksdb::NewLRUCache(std::max<size_t>(options.block_cache_bytes, 1 << 20));

  rocksdb::ColumnFamilyOptions cf;
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  if (options.bloom_bits_per_key > 0) {
    // The memtable filter uses a fixed share of the arena; 0.02 gives ~10 bits per ~60-byte entry.
    cf.memtable_prefix_bloom_size_ratio = 0.002 * options.bloom_bits_per_key;
    cf.memtable_whole_key_filtering = true;
  }
  if (memtable == MemtableKind::kHashSkipList) {
    // Buckets by the key's first 8 bytes, which are a hash of the ID (engine/record_key.h): an insert
    // is a hash plus a search among the few keys of one bucket, not a search of the whole memtable;
    // the sort happens when the memtable is flushed, on a background thread. Capped, not fixed: a
    // shorter key (a plain-layout store's short ID, the legacy empty key) is its own prefix, never a
    // crash. Iterators over this column family need total_order_seek (record_scan does it).
    cf.prefix_extractor.reset(rocksdb::NewCappedPrefixTransform(engine::kKeyHashBytes));
    const size_t buckets = std::clamp<size_t>(options.write_buffer_size / 64, 1 << 10, 1 << 20);
    cf.memtable_factory.reset(rocksdb::NewHashSkipListRepFactory(buckets));
  }
  cf.optimize_filters_for_hits = false;  // misses dominate: every new ID is a miss
  cf.write_buffer_size = options.write_buffer_size;
  cf.max_write_buffer_number = 4;
  cf.compression = rocksdb::kLZ4Compression;
  cf.bottommost_compression = rocksdb::kZSTD;

  auto clock = options.clock ? options.clock : SystemClock();
  cf.compaction_filter_factory = std::make_shared<engine::ExpiryFilterFactory>(clock, engine::ShapeOf(options));
  cf.table_properties_collector_factories.push_back(std::make_shared<engine::DeadlineCollectorFactory>());

  const int64_t ttl_seconds = std::max<int64_t>(1, absl::ToInt64Seconds(absl::Ceil(options.ttl, absl::Seconds(1))));
  const uint64_t revisit = static_cast<uint64_t>(std::clamp<int64_t>(ttl_seconds, 3600, 86400));
  switch (options.compaction) {
    case CompactionProfile::kLeveled:
      cf.compaction_style = rocksdb::kCompactionStyleLevel;
      cf.level_compaction_dynamic_level_bytes = true;
      // Rewrites old files (bottom level included) so the filter sees them; defeats trivial moves.
      cf.periodic_compaction_seconds = revisit;
      cf.ttl = static_cast<uint64_t>(std::clamp<int64_t>(ttl_seconds, 3600, 30 * 86400));
      break;
    case CompactionProfile::kUniversal:
      cf.compaction_style = rocksdb::kCompactionStyleUniversal;
      cf.periodic_compaction_seconds = revisit;
      break;
    case CompactionProfile::kFifo:
      cf.compaction_style = rocksdb::kCompactionStyleFIFO;
      // Whole files are dropped once their flush time is older than the TTL; a file's records were all
      // committed before its flush, so nothing is dropped early. Size-based deletion would drop live IDs
      // (RocksDB's default cap is 1 GiB), so the cap is effectively removed.
      cf.ttl = static_cast<uint64_t>(ttl_seconds);
      cf.periodic_compaction_seconds = 0;
      cf.compaction_options_fifo.allow_compaction = false;
      cf.compaction_options_fifo.max_table_files_size = std::numeric_limits<uint64_t>::max() / 4;
      break;
  }
  return cf;
}

}  // namespace

namespace engine {

rocksdb::DBOptions DBOptionsFor(const Options& options) {
  rocksdb::DBOptions db;
  db.create_if_missing = true;
  db.create_missing_column_families = true;
  db.max_open_files = -1;  // every file's filter stays resident; FIFO requires it
  db.max_background_jobs = 2;
  db.bytes_per_sync = 1 << 20;
  // Bounded disk for a process that runs for months: RocksDB's info LOG grows ~15 KB/s under steady churn
  // (measured by the soak test) and never rolls by default; the MANIFEST rolls only at 1 GiB by default.
  db.keep_log_file_num = 5;
  db.max_log_file_size = 4 << 20;
  db.max_manifest_file_size = 64 << 20;
  // A torn last record (a crash or power loss mid-write) is dropped quietly; corruption anywhere before
  // the tail fails the open (kDataLoss). RocksDB's default, point-in-time recovery, would silently stop
  // replaying at the first bad record and forget every acknowledged commit after it. `idemctl recover`
  // opens such a store anyway and reports what was dropped.
  db.wal_recovery_mode = rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords;
  db.env = options.env != nullptr ? options.env : engine::DefaultEnvWithoutRetryableWalErrors();
  // The hash memtable takes inserts from one writer at a time (RocksDB refuses to open otherwise).
  db.allow_concurrent_memtable_write = ResolvedMemtable(options, /*owned=*/true) != MemtableKind::kHashSkipList;
  return db;
}

absl::Status CheckLease(absl::Duration lease, absl::Duration ttl, std::string_view what) {
  const absl::string_view name(what.data(), what.size());
  if (lease <= absl::ZeroDuration()) return absl::InvalidArgumentError(absl::StrCat(name, " must be positive"));
  if (lease >= ttl) {
    return absl::InvalidArgumentError(absl::StrCat(name, " (", absl::FormatDuration(lease),
                                                   ") must be shorter than the ttl (", absl::FormatDuration(ttl),
                                                   "): a duplicate must be remembered longer than a reservation"));
  }
  return absl::OkStatus();
}

absl::Status ValidateOptions(const Options& options) {
  if (options.ttl <= absl::ZeroDuration()) return absl::InvalidArgumentError("ttl must be positive");
  if (absl::Status s = CheckLease(options.lease, options.ttl, "lease"); !s.ok()) return s;
  if (options.column_family.empty()) return absl::InvalidArgumentError("column_family must not be empty");
  if (options.max_id_bytes == 0 || options.max_id_bytes > (1u << 20)) {
    return absl::InvalidArgumentError("max_id_bytes must be in [1, 1 MiB]");
  }
  if (options.max_result_bytes > (64u << 20)) {
    return absl::InvalidArgumentError("max_result_bytes must be at most 64 MiB");
  }
  if (options.bloom_bits_per_key < 0 || options.bloom_bits_per_key > 64) {
    return absl::InvalidArgumentError("bloom_bits_per_key must be in [0, 64]");
  }
  if (options.write_buffer_size < (64u << 10)) {
    return absl::InvalidArgumentError("write_buffer_size must be at least 64 KiB");
  }
  if (options.wal_sync_interval < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("wal_sync_interval must not be negative");
  }
  if (options.min_free_disk_bytes < -1) {
    return absl::InvalidArgumentError("min_free_disk_bytes must be -1 (automatic), 0 (off) or a byte count");
  }
  if (options.maintenance_interval < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("maintenance_interval must not be negative");
  }
  if (options.token_floor == std::numeric_limits<uint64_t>::max()) {
    return absl::InvalidArgumentError("token_floor leaves no token to issue (it is the largest token)");
  }
  if (options.token_limit != 0 && options.token_limit <= options.token_floor + 1) {
    return absl::InvalidArgumentError("token_limit leaves no token to issue: it must be above token_floor + 1");
  }
  return absl::OkStatus();
}

RetentionShape ShapeOf(const Options& options) {
  return RetentionShape{options.ttl, options.lease, options.compaction};
}

namespace {
const char* ProfileName(CompactionProfile p) {
  switch (p) {
    case CompactionProfile::kLeveled: return "leveled";
    case CompactionProfile::kUniversal: return "universal";
    case CompactionProfile::kFifo: return "fifo";
  }
  return "?";
}
std::string Describe(const RetentionShape& shape) {
  return absl::StrCat("ttl ", absl::FormatDuration(shape.ttl), ", lease ", absl::FormatDuration(shape.lease), ", ",
                      ProfileName(shape.compaction), " compaction");
}
}  // namespace

absl::Status CheckColumnFamilyFor(const rocksdb::ColumnFamilyOptions& current, const RetentionShape& opened_for,
                                  const Options& options, const std::string& name) {
  const RetentionShape wanted = ShapeOf(options);
  if (opened_for.ttl != wanted.ttl || opened_for.lease != wanted.lease || opened_for.compaction != wanted.compaction) {
    return absl::FailedPreconditionError(absl::StrCat(
        "column family '", name, "' was opened with ColumnFamilyOptionsFor(", Describe(opened_for),
        ") but the store is attached for ", Describe(wanted),
        ": IDs would be forgotten or kept by the wrong rule. Open the DB with ColumnFamilyOptionsFor of the same "
        "Options you attach with"));
  }
  // The options RocksDB actually runs with, in case they were edited after ColumnFamilyOptionsFor.
  const rocksdb::ColumnFamilyOptions expected = ColumnFamilyOptionsFor(options);
  std::string mismatch;
  if (current.compaction_style != expected.compaction_style) mismatch = "compaction style";
  if (expected.compaction_style == rocksdb::kCompactionStyleFIFO) {
    if (current.ttl < expected.ttl) mismatch = "FIFO ttl (shorter than the store's ttl)";
    if (current.compaction_options_fifo.allow_compaction) mismatch = "FIFO allow_compaction";
    if (current.compaction_options_fifo.max_table_files_size < expected.compaction_options_fifo.max_table_files_size) {
      mismatch = "FIFO max_table_files_size (deletes live IDs when reached)";
    }
  }
  if (!mismatch.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("column family '", name, "' runs with another ", mismatch,
                                                      " than ColumnFamilyOptionsFor(options) sets"));
  }
  return absl::OkStatus();
}

std::shared_ptr<Clock> ClockOf(const Options& options) { return options.clock ? options.clock : SystemClock(); }

}  // namespace engine
}  // namespace idem
