#include "engine/db/expiry_maintenance.h"

#include <algorithm>
#include <filesystem>
#include <optional>
#include <vector>

#include "absl/time/clock.h"
#include "engine/records/expiry_filter.h"
#include "rocksdb/experimental.h"
#include "rocksdb/metadata.h"

namespace idem::engine {

void ExpiryMaintenance::NoteDeadline(int64_t deadline_us) {
  int64_t seen = memtable_max_deadline_us_.load(std::memory_order_relaxed);
  while (deadline_us > seen &&
         !memtable_max_deadline_us_.compare_exchange_weak(seen, deadline_us, std::memory_order_relaxed)) {
  }
  if (!memtable_dirty_.load(std::memory_order_relaxed)) memtable_dirty_.store(true, std::memory_order_relaxed);
}

void ExpiryMaintenance::ForgetMemtable() {
  memtable_max_deadline_us_.store(std::numeric_limits<int64_t>::min(), std::memory_order_relaxed);
  memtable_dirty_.store(false, std::memory_order_relaxed);
}

absl::Status ExpiryMaintenance::CompactExpired(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf) {
  const int64_t called_us = time_->NowMicros();
  // A background compaction that began before this call judged expiry by its own, earlier time, and a
  // manual compaction that overlaps it only waits for it: its output can still hold records that had
  // expired by now (found by the fuzzer: an automatic L0 compaction at open, still running, moved every
  // file to the bottom level under an old time). So compact, check the files' deadline ranges, and
  // compact again while a file still holds a record that expired before this call.
  for (int attempt = 0;; ++attempt) {
    rocksdb::FlushOptions flush;
    flush.wait = true;
    ForgetMemtable();
    if (rocksdb::Status s = db->Flush(flush, cf); !s.ok()) return on_error_(s, "flushing before compaction");
    rocksdb::CompactRangeOptions compact;
    compact.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
    compact.exclusive_manual_compaction = false;
    if (rocksdb::Status s = db->CompactRange(compact, cf, nullptr, nullptr); !s.ok()) {
      return on_error_(s, "compacting expired records");
    }
    rocksdb::TablePropertiesCollection tables;
    if (rocksdb::Status s = db->GetPropertiesOfAllTables(cf, &tables); !s.ok()) {
      return on_error_(s, "reading table properties");
    }
    bool stale = false;
    for (const auto& [file, properties] : tables) {
      std::optional<DeadlineRange> range = DeadlineRangeOf(*properties);
      stale = stale || (range && range->min_us <= called_us);
    }
    // The second pass starts after the conflicting work ended, so it judges every file by a time after the
    // call. (FIFO never rewrites files, and a caller's snapshot can pin records: no point repeating.)
    if (!stale || attempt == 1 || profile_ == CompactionProfile::kFifo) return absl::OkStatus();
  }
}

absl::Status ExpiryMaintenance::RunPass(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf) {
  const int64_t now_us = time_->NowMicros();

  // 1. A memtable whose records have all expired: flushing it runs the filter, which drops them all.
  if (memtable_dirty_.load(std::memory_order_relaxed) &&
      memtable_max_deadline_us_.load(std::memory_order_relaxed) <= now_us) {
    ForgetMemtable();
    rocksdb::FlushOptions flush;
    flush.wait = true;
    if (rocksdb::Status s = db->Flush(flush, cf); !s.ok()) return on_error_(s, "maintenance flush");
  }

  // 2. SST files whose records have all expired (their deadline range says so without reading them):
  //    compact their key range, bottom level included, so the filter removes them.
  rocksdb::TablePropertiesCollection tables;
  if (rocksdb::Status s = db->GetPropertiesOfAllTables(cf, &tables); !s.ok()) {
    return on_error_(s, "reading table properties");
  }
  std::vector<std::string> due_files;
  for (const auto& [file, properties] : tables) {
    std::optional<DeadlineRange> range = DeadlineRangeOf(*properties);
    if (range && range->max_us <= now_us) due_files.push_back(std::filesystem::path(file).filename().string());
  }
  if (due_files.empty()) return absl::OkStatus();
  // This family's files only (GetLiveFilesMetaData lists every family's: O(partitions) per pass in a set).
  rocksdb::ColumnFamilyMetaData family;
  db->GetColumnFamilyMetaData(cf, &family);
  std::optional<std::string> smallest, largest;
  for (const rocksdb::LevelMetaData& level : family.levels) {
    for (const rocksdb::SstFileMetaData& meta : level.files) {
      const std::string name = std::filesystem::path(meta.name).filename().string();
      if (std::find(due_files.begin(), due_files.end(), name) == due_files.end()) continue;
      if (!smallest || meta.smallestkey < *smallest) smallest = meta.smallestkey;
      if (!largest || meta.largestkey > *largest) largest = meta.largestkey;
    }
  }
  if (!smallest || !largest) return absl::OkStatus();
  rocksdb::CompactRangeOptions compact;
  compact.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForceOptimized;
  compact.exclusive_manual_compaction = false;
  const rocksdb::Slice begin(*smallest), end(*largest);
  if (rocksdb::Status s = db->CompactRange(compact, cf, &begin, &end); !s.ok()) {
    return on_error_(s, "maintenance compaction");
  }
  return absl::OkStatus();
}

void ExpiryMaintenance::Nudge(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf) {
  // RocksDB 7.8 evaluates periodic compaction only when a version is installed or compaction scores are
  // recomputed; on an idle DB nothing does either (docs/ROCKSDB.md §2). SuggestCompactRange over an empty
  // key range recomputes this family's scores (which marks its aged files) and schedules the work,
  // without touching the OPTIONS file: a no-op SetOptions rewrites and re-reads that file, which lists
  // every family of the DB, so in a partition set of N partitions each store's nudge cost O(N).
  const absl::Time real_now = absl::Now();
  if (profile_ == CompactionProfile::kFifo || real_now - last_nudge_ < absl::Minutes(10)) return;
  last_nudge_ = real_now;
  // (7.8.3 answers OK whatever the compaction style; the header's "leveled only" is about the range's
  // marks, and an empty range marks nothing: records keys are never empty.)
  const rocksdb::Slice nothing;
  rocksdb::experimental::SuggestCompactRange(db, cf, &nothing, &nothing).PermitUncheckedError();
}

}  // namespace idem::engine
