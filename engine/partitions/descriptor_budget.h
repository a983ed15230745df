// The set's descriptor budget: RocksDB keeps every SST file of every partition open (max_open_files
// -1: their filters stay resident, and a bounded table cache misread families on 7.8.3, docs/ROCKSDB.md),
// so the set raises the soft RLIMIT_NOFILE to the hard one and admits a partition only while its open
// files stay within half of it — the set can then always reopen under the limit it ran under.
#ifndef IDEM_ENGINE_PARTITIONS_DESCRIPTOR_BUDGET_H_
#define IDEM_ENGINE_PARTITIONS_DESCRIPTOR_BUDGET_H_

#include <cstddef>

#include "absl/status/status.h"
#include "rocksdb/db.h"

namespace idem::engine {

// Half the soft descriptor limit (the rest is the process's: sockets, logs, the WAL), at least 64,
// after raising the soft limit to the hard one when `raise`. Changes the process's limit: call once,
// when the set opens.
size_t FilesBudget(bool raise);
// kResourceExhausted, saying what to raise, when another partition would pass `budget` with the files
// `db` holds now (null: OK). Thread-safe.
absl::Status CheckFilesBudget(rocksdb::DB* db, size_t budget);

}  // namespace idem::engine

#endif  // IDEM_ENGINE_PARTITIONS_DESCRIPTOR_BUDGET_H_
