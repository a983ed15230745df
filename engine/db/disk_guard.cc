#include "engine/db/disk_guard.h"

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "rocksdb/convenience.h"
#include "rocksdb/utilities/options_util.h"
#include "rocksdb/write_buffer_manager.h"

namespace idem::engine {
namespace {

// RocksDB writes a byte of a batch about this many times before it settles (WAL, flush, compactions).
constexpr int64_t kWriteAmplification = 8;

std::string Mib(uint64_t bytes) { return absl::StrCat(bytes >> 20, " MiB"); }

}  // namespace

uint64_t DiskReserveFor(int64_t min_free_disk_bytes, uint64_t memtable_capacity) {
  if (min_free_disk_bytes >= 0) return static_cast<uint64_t>(min_free_disk_bytes);
  return std::max<uint64_t>(64ull << 20, memtable_capacity);
}

namespace {

uint64_t CapacityOf(const rocksdb::ColumnFamilyOptions& options) {
  return static_cast<uint64_t>(options.write_buffer_size) *
         static_cast<uint64_t>(std::max(options.max_write_buffer_number, 1));
}

}  // namespace

uint64_t MemtableCapacity(rocksdb::DB* db, const std::vector<rocksdb::ColumnFamilyHandle*>& known) {
  const rocksdb::DBOptions db_options = db->GetDBOptions();
  if (db_options.write_buffer_manager != nullptr && db_options.write_buffer_manager->enabled()) {
    return db_options.write_buffer_manager->buffer_size();
  }
  if (db_options.db_write_buffer_size > 0) return db_options.db_write_buffer_size;
  uint64_t total = 0;
  std::vector<std::string> seen;
  for (rocksdb::ColumnFamilyHandle* h : known) {
    total += CapacityOf(db->GetOptions(h));
    seen.push_back(h->GetName());
  }
  std::vector<std::string> names;
  if (!rocksdb::DB::ListColumnFamilies(db_options, db->GetName(), &names).ok()) return total;
  // A family opened by someone else (an attached store's caller): its options as the DB last wrote them.
  rocksdb::ConfigOptions config;
  config.ignore_unknown_options = true;
  config.env = db->GetEnv();
  rocksdb::DBOptions ignored;
  std::vector<rocksdb::ColumnFamilyDescriptor> persisted;
  const bool loaded = rocksdb::LoadLatestOptions(config, db->GetName(), &ignored, &persisted).ok();
  for (const std::string& name : names) {
    if (std::find(seen.begin(), seen.end(), name) != seen.end()) continue;
    rocksdb::ColumnFamilyOptions options;  // RocksDB's defaults, unless the OPTIONS file says otherwise
    for (const rocksdb::ColumnFamilyDescriptor& d :
         loaded ? persisted : std::vector<rocksdb::ColumnFamilyDescriptor>{}) {
      if (d.name == name) options = d.options;
    }
    total += CapacityOf(options);
  }
  return total;
}

std::unique_ptr<DiskGuard> DiskGuard::For(const std::string& path, uint64_t reserve) {
  if (reserve == 0) return nullptr;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return nullptr;
  std::unique_ptr<DiskGuard> guard(
      new DiskGuard(path, reserve, static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)));
  guard->Measure();
  return guard;
}

DiskGuard::DiskGuard(std::string path, uint64_t reserve, uint64_t dev, uint64_t ino)
    : path_(std::move(path)), reserve_(reserve), dev_(dev), ino_(ino) {}

void DiskGuard::Measure() {
  absl::Status verdict;
  int64_t budget = 0;
  struct stat st;
  struct statvfs vfs;
  if (::stat(path_.c_str(), &st) != 0 || static_cast<uint64_t>(st.st_dev) != dev_ ||
      static_cast<uint64_t>(st.st_ino) != ino_) {
    verdict = absl::DataLossError(absl::StrCat("the store's directory '", path_,
                                               "' was deleted or replaced while the store was open; writes are "
                                               "refused (they would be lost at the next restart)"));
  } else if (::statvfs(path_.c_str(), &vfs) != 0) {
    verdict =
        absl::UnavailableError(absl::StrCat("cannot measure free space of '", path_, "': ", std::strerror(errno)));
  } else {
    // f_bavail: what an unprivileged writer may use (root's reserved blocks do not count).
    const uint64_t free_bytes = static_cast<uint64_t>(vfs.f_bavail) * static_cast<uint64_t>(vfs.f_frsize);
    free_bytes_.store(free_bytes, std::memory_order_relaxed);
    if (free_bytes < reserve_) {
      verdict = absl::UnavailableError(absl::StrCat("disk nearly full: ", Mib(free_bytes),
                                                    " free on the store's file system, below min_free_disk_bytes (",
                                                    Mib(reserve_), "); writes are refused until space returns"));
    } else {
      budget = static_cast<int64_t>((free_bytes - reserve_) / kWriteAmplification);
    }
  }
  util::MutexLock lock(&mu_);
  verdict_ = verdict;
  refusing_.store(!verdict.ok(), std::memory_order_release);
  budget_.store(budget, std::memory_order_release);
}

absl::Status DiskGuard::CheckWrite(size_t bytes) {
  if (!refusing_.load(std::memory_order_acquire) &&
      budget_.fetch_sub(static_cast<int64_t>(bytes), std::memory_order_acq_rel) > static_cast<int64_t>(bytes)) {
    return absl::OkStatus();
  }
  Measure();  // out of budget, or refusing: look again before answering
  util::MutexLock lock(&mu_);
  if (verdict_.ok()) return verdict_;
  refusals_.fetch_add(1, std::memory_order_relaxed);
  // A call's kDataLoss would mean "this ID's record is corrupt"; a vanished directory is the store's
  // condition, reported by Health() and Resume().
  return absl::UnavailableError(verdict_.message());
}

absl::Status DiskGuard::Health() {
  Measure();
  util::MutexLock lock(&mu_);
  return verdict_;
}

}  // namespace idem::engine
