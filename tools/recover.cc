#include "tools/recover.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "engine/db/column_families.h"
#include "engine/db/rocksdb_options.h"
#include "engine/db/wal_scan.h"
#include "engine/records/record.h"
#include "engine/records/record_key.h"
#include "idem/options.h"
#include "idem/store.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"
#include "tools/store_families.h"
#include "util/printable.h"

namespace idem::tools {
namespace {

// Collects what a dropped batch held: idem records by state, and the count of other writes.
class DroppedWrites : public rocksdb::WriteBatch::Handler {
 public:
  explicit DroppedWrites(uint32_t idem_cf) : idem_cf_(idem_cf) {}
  rocksdb::Status PutCF(uint32_t cf, const rocksdb::Slice& key, const rocksdb::Slice& value) override {
    if (cf != idem_cf_ || key.empty()) {
      ++other;
      return rocksdb::Status::OK();
    }
    absl::StatusOr<engine::Record> r = engine::DecodeRecord(std::string_view(value.data(), value.size()));
    (r.ok() && r->state == engine::RecordState::kDone ? commits : reservations)
        .emplace_back(engine::IdForDisplay(std::string_view(key.data(), key.size())));
    return rocksdb::Status::OK();
  }
  rocksdb::Status DeleteCF(uint32_t cf, const rocksdb::Slice& key) override {
    if (cf == idem_cf_)
      releases.emplace_back(engine::IdForDisplay(std::string_view(key.data(), key.size())));
    else
      ++other;
    return rocksdb::Status::OK();
  }
  rocksdb::Status SingleDeleteCF(uint32_t cf, const rocksdb::Slice& key) override { return DeleteCF(cf, key); }
  rocksdb::Status MergeCF(uint32_t, const rocksdb::Slice&, const rocksdb::Slice&) override {
    ++other;
    return rocksdb::Status::OK();
  }
  rocksdb::Status DeleteRangeCF(uint32_t, const rocksdb::Slice&, const rocksdb::Slice&) override {
    ++other;
    return rocksdb::Status::OK();
  }

  std::vector<std::string> commits, reservations, releases;
  size_t other = 0;

 private:
  const uint32_t idem_cf_;
};

}  // namespace

int Recover(const std::string& path, const std::string& column_family, bool hex_keys) {
  // 1. What the WAL holds, read before RocksDB replays (and then deletes) it.
  std::vector<engine::WalScan> scans;
  for (const std::string& file : engine::WalFiles(path)) {
    absl::StatusOr<engine::WalScan> scan = engine::ScanWal(file);
    if (!scan.ok()) {
      std::fprintf(stderr, "idemctl: %s\n", std::string(scan.status().message()).c_str());
      return 1;
    }
    if (scan->damage_offset) {
      std::printf("WAL %s: damaged at offset %llu%s\n", file.c_str(), (unsigned long long)*scan->damage_offset,
                  scan->well_formed_after_damage ? ", with well-formed records after it" : " (a torn tail)");
    }
    scans.push_back(*std::move(scan));
  }

  // 2. Point-in-time recovery: replay up to the first damage, drop the rest.
  Options options;
  options.column_family = column_family;
  rocksdb::DBOptions db_options;
  db_options.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  db_options.max_open_files = -1;
  // As Store::Open has it: its records column family may use the hash memtable (engine/rocksdb_options.h).
  db_options.allow_concurrent_memtable_write = engine::DBOptionsFor(options).allow_concurrent_memtable_write;
  std::vector<std::string> names;
  rocksdb::Status s = rocksdb::DB::ListColumnFamilies(db_options, path, &names);
  if (!s.ok()) {
    std::fprintf(stderr, "idemctl: '%s' is not a RocksDB store: %s\n", path.c_str(), s.ToString().c_str());
    return 1;
  }
  if (std::find(names.begin(), names.end(), column_family) == names.end()) {
    std::fprintf(stderr, "idemctl: '%s' has no column family '%s'; not an idem store?\n", path.c_str(),
                 column_family.c_str());
    return 1;
  }
  // The caller's families with their own options (comparators above all): tools/store_families.h.
  absl::StatusOr<std::vector<ColumnFamilySpec>> callers = CallerFamilies(path, column_family);
  if (!callers.ok()) {
    std::fprintf(stderr, "idemctl: %s\n", std::string(callers.status().message()).c_str());
    return 1;
  }
  const engine::StoreColumnFamilies families = engine::ColumnFamiliesFor(options, names, std::nullopt, *callers);
  const size_t idem_index = families.records_index;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  s = rocksdb::DB::Open(db_options, path, families.descriptors, &handles, &raw);
  if (!s.ok()) {
    if (std::string problem = ComparatorProblem(path, *callers); !problem.empty()) {
      std::fprintf(stderr, "idemctl: %s\n", problem.c_str());
      return 3;
    }
    std::fprintf(stderr, "idemctl: recovery failed: %s\n", s.ToString().c_str());
    return 1;
  }
  std::unique_ptr<rocksdb::DB> db(raw);
  const uint64_t recovered = db->GetLatestSequenceNumber();
  const uint32_t idem_cf = handles[idem_index]->GetID();
  s = db->Flush(rocksdb::FlushOptions(), handles);  // the replayed state to SST files, old WALs obsolete
  for (auto* h : handles) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  rocksdb::Status closed = db->Close();
  if (!s.ok() || !closed.ok()) {
    std::fprintf(stderr, "idemctl: recovery could not persist: %s %s\n", s.ToString().c_str(),
                 closed.ToString().c_str());
    return 1;
  }

  // 3. What was dropped: every batch past the recovered sequence.
  DroppedWrites dropped(idem_cf);
  size_t batches = 0, unreadable = 0;
  uint64_t first_seq = 0, last_seq = 0;
  for (const engine::WalScan& scan : scans) {
    for (const engine::WalBatch& batch : scan.batches) {
      if (batch.sequence <= recovered) continue;
      if (batches++ == 0) first_seq = batch.sequence;
      last_seq = batch.sequence + batch.count - 1;
      rocksdb::WriteBatch wb(batch.rep);
      if (!wb.Iterate(&dropped).ok()) ++unreadable;
    }
  }
  std::printf("recovered to sequence %llu\n", (unsigned long long)recovered);
  if (batches == 0) {
    std::printf("dropped: nothing well-formed was found after the recovered point\n");
  } else {
    std::printf(
        "dropped: %zu write batches (sequences %llu..%llu)%s: %zu idem commits, %zu reservations, %zu "
        "releases, %zu other writes (effects)\n",
        batches, (unsigned long long)first_seq, (unsigned long long)last_seq,
        unreadable ? absl::StrFormat(", %zu unreadable", unreadable).c_str() : "", dropped.commits.size(),
        dropped.reservations.size(), dropped.releases.size(), dropped.other);
    for (const std::string& id : dropped.commits) {
      std::printf("forgotten commit: %s\n", util::PrintableAll(id, hex_keys).c_str());
    }
    std::printf(
        "A redelivery of a forgotten commit is new again and will be applied again; its effects in this "
        "DB were dropped with it.\n");
  }
  // 4. The store opens normally now.
  Options check;
  check.column_family = column_family;
  check.create_if_missing = false;
  check.maintenance_interval = absl::ZeroDuration();
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(check, path, *callers);
  if (!store.ok()) {
    std::fprintf(stderr, "idemctl: the store still does not open: %s\n", std::string(store.status().message()).c_str());
    return 1;
  }
  std::printf("the store opens normally again\n");
  return 0;
}

}  // namespace idem::tools
