// How idemctl's commands that write (forget, compact, checkpoint, recover) open a store's DB beside the
// caller's own column families, and which DBs they refuse.
//
// RocksDB 7.8 opens a DB for writing only with every one of its column families (DB::Open: "Column
// families not opened"), each with the comparator it was made with ("does not match existing
// comparator"); only read-only and secondary instances may open a subset, which is what the read-only
// commands do (the store's own families only). So the caller's families are opened with the options
// the DB last wrote to its OPTIONS file (rocksdb::LoadLatestOptions): comparators RocksDB makes by name
// (bytewise, reverse bytewise, the u64 timestamp ones) come back as they were. One of the caller's own
// code cannot be made by name: the tool then refuses, naming the family and its comparator, rather
// than open the family in a wrong order (its first flush would write a corrupt file). Those families
// are opened with automatic compactions off: the tool has no business rewriting the caller's data, and
// their merge operator or compaction filter (the caller's code too) may be missing.
//
// Thread safety: functions of their arguments.
#ifndef IDEM_TOOLS_STORE_FAMILIES_H_
#define IDEM_TOOLS_STORE_FAMILIES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "idem/store.h"

namespace idem::tools {

// The DB's column families other than "default" and `store_family`, with their persisted options.
// kUnavailable when the OPTIONS file cannot be read.
absl::StatusOr<std::vector<ColumnFamilySpec>> CallerFamilies(const std::string& path, const std::string& store_family);

// After an open failed: which of `callers` has a comparator the tool could not make, as a message for
// the operator (what to do instead); empty when none did.
std::string ComparatorProblem(const std::string& path, const std::vector<ColumnFamilySpec>& callers);

// The message refusing a command that writes on a PartitionSet's DB, or empty when `path` is not one.
// A partition's records and effects are replicated through its changelog: a change made here would
// never reach it, the next restore or catch-up would disagree with the owner's state, and the copy
// would stay marked clean.
std::string PartitionSetRefusal(const std::string& path, const std::string& command);

}  // namespace idem::tools

#endif  // IDEM_TOOLS_STORE_FAMILIES_H_
