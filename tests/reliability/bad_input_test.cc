// Bad input a user can reach, beyond the per-call checks of store_test: directories that are not this
// store (other files, another column-family layout, a corrupt manifest pointer), options that contradict
// each other, and a Close racing calls on other threads. Each gets a clear status and loses nothing.
#include <atomic>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "idem/store.h"
#include "rocksdb/db.h"
#include "tests/support/test_util.h"

namespace idem {
namespace {

using ::idem::testing::IsOk;
using ::idem::testing::ManualOptions;
using ::idem::testing::ScratchDir;
using ::idem::testing::StatusIs;
using ::testing::HasSubstr;

void MustCommit(Store& store, const std::string& id) {
  absl::StatusOr<Reservation> r = store.Reserve(id);
  ASSERT_THAT(r, IsOk());
  ASSERT_THAT(store.Commit(id, r->token, "ok"), IsOk());
}

TEST(BadInputTest, DirectoryWithOtherFilesIsNotTakenOver) {
  ScratchDir dir;
  const std::string path = dir.Sub("photos");
  std::filesystem::create_directories(path);
  { std::ofstream(path + "/holiday.jpg") << "not a database"; }
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(ManualOptions(), path);
  EXPECT_THAT(store, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store.status().message(), HasSubstr("not an idem store"));
  EXPECT_FALSE(std::filesystem::exists(path + "/CURRENT")) << "nothing may be created there";
  EXPECT_TRUE(std::filesystem::exists(path + "/holiday.jpg"));
}

TEST(BadInputTest, StoreUnderAnotherColumnFamilyNameIsRefusedNotRestartedEmpty) {
  ScratchDir dir;
  const std::string path = dir.Sub("db");
  {
    Options options = ManualOptions();
    options.column_family = "orders-idem";
    IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, path));
    MustCommit(*store, "order-1");
  }
  absl::StatusOr<std::unique_ptr<Store>> wrong = Store::Open(ManualOptions(), path);  // column_family "idem"
  EXPECT_THAT(wrong, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(wrong.status().message(), HasSubstr("'orders-idem'"));
  // Nothing changed: the right name still finds the commit, and no stray column family was created.
  std::vector<std::string> names;
  ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), path, &names).ok());
  EXPECT_EQ(names.size(), 2u);
  Options right = ManualOptions();
  right.column_family = "orders-idem";
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(right, path));
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation again, store->Reserve("order-1"));
  EXPECT_EQ(again.verdict, Verdict::kDuplicate);
}

TEST(BadInputTest, DbWithOtherColumnFamiliesButNoStoreGetsOneBesideThem) {
  ScratchDir dir;
  const std::string path = dir.Sub("db");
  {
    rocksdb::Options options;
    options.create_if_missing = true;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(options, path, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    rocksdb::ColumnFamilyHandle* ledger = nullptr;
    ASSERT_TRUE(db->CreateColumnFamily(rocksdb::ColumnFamilyOptions(), "ledger", &ledger).ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), ledger, "balance", "100").ok());
    ASSERT_TRUE(db->DestroyColumnFamilyHandle(ledger).ok());
  }
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(ManualOptions(), path));
  MustCommit(*store, "event-1");
  std::vector<std::string> names;
  ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), path, &names).ok());
  EXPECT_EQ(names.size(), 3u);
}

TEST(BadInputTest, CorruptManifestPointerIsAClearErrorNotACrash) {
  ScratchDir dir;
  const std::string path = dir.Sub("db");
  {
    IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(ManualOptions(), path));
    MustCommit(*store, "event-1");
  }
  { std::ofstream(path + "/CURRENT", std::ios::trunc) << "MANIFEST-999999\n"; }
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(ManualOptions(), path);
  EXPECT_FALSE(store.ok());
  EXPECT_THAT(store.status().message(), HasSubstr(path));
}

TEST(BadInputTest, ContradictoryOptionsNameTheField) {
  ScratchDir dir;
  struct Case {
    const char* field;
    void (*set)(Options*);
  };
  const Case cases[] = {
      {"lease", [](Options* o) { o->lease = o->ttl; }},
      {"lease", [](Options* o) { o->lease = absl::Seconds(-1); }},
      {"ttl", [](Options* o) { o->ttl = absl::ZeroDuration(); }},
      {"column_family", [](Options* o) { o->column_family.clear(); }},
      {"max_id_bytes", [](Options* o) { o->max_id_bytes = 0; }},
      {"max_id_bytes", [](Options* o) { o->max_id_bytes = size_t{2} << 20; }},
      {"max_result_bytes", [](Options* o) { o->max_result_bytes = size_t{1} << 30; }},
      {"bloom_bits_per_key", [](Options* o) { o->bloom_bits_per_key = -1; }},
      {"write_buffer_size", [](Options* o) { o->write_buffer_size = 1; }},
      {"wal_sync_interval", [](Options* o) { o->wal_sync_interval = -absl::Seconds(1); }},
      {"maintenance_interval", [](Options* o) { o->maintenance_interval = -absl::Seconds(1); }},
  };
  for (const Case& c : cases) {
    Options options = ManualOptions();
    c.set(&options);
    absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(options, dir.Sub("db"));
    EXPECT_THAT(store, StatusIs(absl::StatusCode::kInvalidArgument)) << c.field;
    EXPECT_THAT(store.status().message(), HasSubstr(c.field));
  }
  EXPECT_FALSE(std::filesystem::exists(dir.Sub("db"))) << "refused options create nothing";
}

// Close while other threads are mid-call: each call either completes (and then counts) or is refused
// with a clear status; nothing crashes, and every commit that returned OK is there after reopening.
TEST(BadInputTest, CloseRacingCallsLosesNothingAcknowledged) {
  for (bool durable : {true, false}) {
    ScratchDir dir;
    Options options = ManualOptions();
    options.durable_reservations = durable;
    IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, dir.Sub("db")));
    std::atomic<bool> go{false};
    std::vector<std::vector<std::string>> acked(4);
    std::vector<std::thread> threads;
    std::atomic<int> unexpected{0};
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        while (!go.load()) std::this_thread::yield();
        for (int i = 0;; ++i) {
          const std::string id = "t" + std::to_string(t) + "-" + std::to_string(i);
          absl::StatusOr<Reservation> r = store->Reserve(id);
          if (!r.ok()) {
            if (r.status().code() != absl::StatusCode::kFailedPrecondition) unexpected++;
            return;
          }
          absl::Status s = store->Commit(id, r->token, "ok");
          if (s.ok()) {
            acked[t].push_back(id);
          } else if (s.code() != absl::StatusCode::kFailedPrecondition) {
            unexpected++;
          }
        }
      });
    }
    go.store(true);
    std::this_thread::sleep_for(std::chrono::milliseconds(30));  // let them work; not a timing assertion
    EXPECT_THAT(store->Close(), IsOk());
    for (auto& t : threads) t.join();
    EXPECT_EQ(unexpected.load(), 0);
    store.reset();
    IDEM_ASSERT_OK_AND_ASSIGN(store, Store::Open(options, dir.Sub("db")));
    size_t total = 0;
    for (const auto& ids : acked) {
      for (const std::string& id : ids) {
        IDEM_ASSERT_OK_AND_ASSIGN(RecordInfo info, store->Peek(id));
        EXPECT_EQ(info.state, RecordInfo::State::kDone) << id;
        ++total;
      }
    }
    EXPECT_GT(total, 0u);
  }
}

}  // namespace
}  // namespace idem
