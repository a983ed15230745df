// Opening the RocksDB under a store from Store::Open, with the checks that keep a wrong path, a wrong
// name or a damaged WAL from turning into an empty store that admits every remembered ID again:
//   - the directory is prepared like `mkdir -p`, with errors by what the caller should do next;
//   - a directory holding files RocksDB would not have written is refused (a wrong path);
//   - an existing DB holding another store's metadata under another column-family name is refused;
//   - an existing column family is opened as the store only if the store's metadata names it (or it is
//     a store of an earlier release); a new store's metadata is written before its family is created;
//   - with IfMissing::kRefuse (reopens, create_if_missing = false) nothing is ever created;
//   - damage in the last block of a WAL followed by well-formed records is kDataLoss (engine/wal_scan.h).
//
// Thread safety: functions of their arguments.
#ifndef IDEM_ENGINE_DB_DB_OPEN_H_
#define IDEM_ENGINE_DB_DB_OPEN_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/db/db_lifecycle.h"
#include "engine/records/expiry_filter.h"
#include "engine/records/store_metadata.h"
#include "idem/options.h"
#include "idem/store.h"

namespace idem::engine {

// Makes sure `path` can hold a store, creating it and its parents when `create`. kInvalidArgument (not a
// directory), kPermissionDenied, kFailedPrecondition (read-only file system), kUnavailable (anything else).
absl::Status PrepareDirectory(const std::string& path, bool create);

// Opens the DB at `path` with idem's column family configured by `options`, its expiry filter being
// `filter` (one factory for the store's whole life) and `health` listening for background errors.
// kNotFound when `if_missing` is kRefuse and there is no store; other errors as Store::Open documents.
// `callers`: the caller's column families (Store::Open), opened with their options or created.
absl::StatusOr<OpenedDb> OpenStoreDb(const Options& options, const std::string& path,
                                     std::shared_ptr<ExpiryFilterFactory> filter,
                                     std::shared_ptr<HealthListener> health, IfMissing if_missing,
                                     const std::vector<ColumnFamilySpec>& callers = {});

}  // namespace idem::engine

#endif  // IDEM_ENGINE_DB_DB_OPEN_H_
