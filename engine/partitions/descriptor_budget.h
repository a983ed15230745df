// The set's descriptor budget: RocksDB keeps every SST file of every partition open (max_open_files
// -1: their filters stay resident, and a bounded table cache misread families on 7.8.3, docs/ROCKSDB.md),
// so the set raises the soft RLIMIT_NOFILE to the hard one and admits a partition only while its open
// files stay within half of it — the set can then always reopen under the limit it ran under.
#ifndef IDEM_ENGINE_PARTITIONS_DESCRIPTOR_BUDGET_H_
#define IDEM_ENGINE_PARTITIONS_DESCRIPTOR_BUDGET_H_

#include <chrono>
#include <cstddef>
#include <optional>

#include "absl/status/status.h"
#include "rocksdb/db.h"

namespace idem::engine {

// Half the soft descriptor limit (the rest is the process's: sockets, logs, the WAL), at least 64,
// after raising the soft limit to the hard one when `raise`. Changes the process's limit: call once,
// when the set opens.
size_t FilesBudget(bool raise);
// kResourceExhausted, saying what to raise, when another partition would pass the budget with the
// files the set holds; for every Activate and Restore of a set, without its cost growing with the set:
// counting walks every family's files (GetLiveFilesMetaData: O(partitions)), so the count is kept and
// taken again only when it is older than `recount_after`, or when it, plus a partition's worth of files
// for each partition admitted since, comes near the budget (near the limit every check counts).
// Thread-compatible: the set calls it under its mutex.
class FilesBudgetCheck {
 public:
  FilesBudgetCheck(size_t budget, std::chrono::steady_clock::duration recount_after)
      : budget_(budget), recount_after_(recount_after) {}
  // REQUIRES: `db` pinned open. `families`: the new partition's column families (a file each, soon).
  absl::Status Check(rocksdb::DB* db, size_t families);
  size_t budget() const { return budget_; }

 private:
  static constexpr size_t kMargin = 8;
  size_t budget_;
  std::chrono::steady_clock::duration recount_after_;  // a monotonic clock: a wall clock set back stalls it
  size_t counted_ = 0;
  size_t admitted_since_ = 0;  // files the partitions admitted since the count may have opened
  std::optional<std::chrono::steady_clock::time_point> counted_at_;
};

}  // namespace idem::engine

#endif  // IDEM_ENGINE_PARTITIONS_DESCRIPTOR_BUDGET_H_
