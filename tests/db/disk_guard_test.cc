// The disk guard's reserve (engine/disk_guard.h): room to flush every memtable the DB can hold, the
// caller's own column families included.
#include <sys/statvfs.h>

#include <memory>
#include <string>
#include <vector>

#include "engine/db/disk_guard.h"
#include "idem/store.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/write_buffer_manager.h"
#include "tests/support/test_util.h"

namespace idem {
namespace {

using ::idem::testing::IsOk;
using ::idem::testing::ManualOptions;
using ::idem::testing::ScratchDir;
using ::idem::testing::StatusIs;

constexpr uint64_t kMiB = 1 << 20;

uint64_t FreeBytes(const std::string& path) {
  struct statvfs vfs;
  EXPECT_EQ(::statvfs(path.c_str(), &vfs), 0);
  return static_cast<uint64_t>(vfs.f_bavail) * static_cast<uint64_t>(vfs.f_frsize);
}

// A DB of three families opened directly: RocksDB's defaults for "big", 2 x 3 MiB for "small".
class ThreeFamilies {
 public:
  explicit ThreeFamilies(const std::string& path, rocksdb::DBOptions options = {}) {
    options.create_if_missing = true;
    options.create_missing_column_families = true;
    rocksdb::ColumnFamilyOptions small;
    small.write_buffer_size = 3 * kMiB;
    small.max_write_buffer_number = 2;
    rocksdb::ColumnFamilyOptions base;
    base.write_buffer_size = 1 * kMiB;
    base.max_write_buffer_number = 3;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {{"default", base}, {"big", {}}, {"small", small}};
    rocksdb::DB* raw = nullptr;
    EXPECT_TRUE(rocksdb::DB::Open(options, path, cfs, &handles, &raw).ok());
    db.reset(raw);
  }
  ~ThreeFamilies() {
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  }
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
};

TEST(DiskGuardTest, TheReserveCoversEveryFamilysMemtables) {
  ScratchDir dir;
  ThreeFamilies three(dir.Sub("db"));
  const uint64_t expected = 1 * kMiB * 3 + 64 * kMiB * 2 + 3 * kMiB * 2;
  // Whether the handles are known or the options come from the OPTIONS file (an attached store's case).
  EXPECT_EQ(engine::MemtableCapacity(three.db.get(), three.handles), expected);
  EXPECT_EQ(engine::MemtableCapacity(three.db.get(), {three.handles[0]}), expected);
  EXPECT_EQ(engine::MemtableCapacity(three.db.get(), {}), expected);
  EXPECT_EQ(engine::DiskReserveFor(-1, expected), expected);
  EXPECT_EQ(engine::DiskReserveFor(-1, 5 * kMiB), 64 * kMiB) << "at least 64 MiB";
  EXPECT_EQ(engine::DiskReserveFor(7, expected), 7u) << "min_free_disk_bytes, when set, is what it says";
}

TEST(DiskGuardTest, AWriteBufferBudgetIsTheCapacity) {
  ScratchDir dir;
  rocksdb::DBOptions options;
  options.write_buffer_manager = std::make_shared<rocksdb::WriteBufferManager>(40 * kMiB);
  ThreeFamilies with_manager(dir.Sub("wbm"), options);
  EXPECT_EQ(engine::MemtableCapacity(with_manager.db.get(), with_manager.handles), 40 * kMiB);
  rocksdb::DBOptions db_budget;
  db_budget.db_write_buffer_size = 24 * kMiB;
  ThreeFamilies with_budget(dir.Sub("budget"), db_budget);
  EXPECT_EQ(engine::MemtableCapacity(with_budget.db.get(), with_budget.handles), 24 * kMiB);
}

// Store::Open with a caller's family whose memtables could hold more than the file system has free:
// the default guard refuses writes ("disk nearly full") instead of letting that family's flush meet a
// full disk. Before, the reserve counted only the store's own write buffer.
TEST(DiskGuardTest, TheCallersFamiliesCountInTheStoresReserve) {
  ScratchDir dir;
  const uint64_t free_bytes = FreeBytes(dir.path());
  auto ledger = std::make_shared<rocksdb::ColumnFamilyOptions>();
  ledger->write_buffer_size = 8 * kMiB;
  ledger->max_write_buffer_number = static_cast<int>(2 * (free_bytes / (8 * kMiB)) + 2);
  Options options = ManualOptions();
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, dir.Sub("db"), {{"ledger", ledger}}));
  EXPECT_THAT(store->Health(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(store->Health().message(), ::testing::HasSubstr("disk nearly full"));
  absl::StatusOr<Reservation> r = store->Reserve("evt");  // its first token is a metadata write
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(r.status().message(), ::testing::HasSubstr("disk nearly full"));
  // Without the caller's family the same store has room.
  store.reset();
  IDEM_ASSERT_OK_AND_ASSIGN(auto plain, Store::Open(options, dir.Sub("plain")));
  EXPECT_THAT(plain->Health(), IsOk());
}

}  // namespace
}  // namespace idem
