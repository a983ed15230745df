// The column families of a DB that holds an idem store, with the options each needs — the one place that
// says how RocksDB is opened with idem's options (the store's own open, idemctl, tune, the benchmarks):
//   - the records column family: ColumnFamilyOptionsFor(options) (expiry filter, filters, profile), or
//     the caller's variant of it;
//   - every other one (the default column family holds the store's metadata): plain options with a
//     memtable no larger than the store's, because RocksDB preallocates each WAL file at 1.1 x the
//     largest write buffer of any column family (RocksDB's default 64 MiB would reserve that much disk
//     whatever Options::write_buffer_size says).
//
// Thread safety: a function of its arguments.
#ifndef IDEM_ENGINE_DB_COLUMN_FAMILIES_H_
#define IDEM_ENGINE_DB_COLUMN_FAMILIES_H_

#include <optional>
#include <string>
#include <vector>

#include "idem/options.h"
#include "idem/store.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"

namespace idem::engine {

struct StoreColumnFamilies {
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  size_t records_index = 0;  // the records column family's position in descriptors
};

// Descriptors for `names` (the DB's column families, e.g. from ListColumnFamilies; the records column
// family, Options::column_family, is added when missing). `records`: the options of the records column
// family, ColumnFamilyOptionsFor(options) when not given.
// `callers`: column families of the caller's (Store::Open's ColumnFamilySpec), added when missing from
// `names` and opened with their own options.
StoreColumnFamilies ColumnFamiliesFor(const Options& options, std::vector<std::string> names,
                                      std::optional<rocksdb::ColumnFamilyOptions> records = std::nullopt,
                                      const std::vector<ColumnFamilySpec>& callers = {});

}  // namespace idem::engine

#endif  // IDEM_ENGINE_DB_COLUMN_FAMILIES_H_
