// Store::Open with the caller's own column families: opened or created on every Open and on every
// reopen, their handles from Store::family().
#include <memory>
#include <string>
#include <vector>

#include "idem/store.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/write_batch.h"
#include "testing/fault_fs.h"
#include "tests/support/test_util.h"

namespace idem {
namespace {

using ::idem::testing::IsOk;
using ::idem::testing::ManualOptions;
using ::idem::testing::ScratchDir;
using ::idem::testing::StatusIs;

Options TestOptions() {
  Options options = ManualOptions();
  return options;
}

absl::Status CommitWithLedger(Store& store, const std::string& id, const std::string& value) {
  absl::StatusOr<Reservation> r = store.Reserve(id);
  if (!r.ok()) return r.status();
  rocksdb::WriteBatch effects;
  effects.Put(store.family("ledger"), id, value);
  return store.Commit(id, r->token, "", &effects);
}

std::string Ledger(Store& store, const std::string& key) {
  std::string value;
  rocksdb::Status s = store.db()->Get(rocksdb::ReadOptions(), store.family("ledger"), key, &value);
  return s.ok() ? value : "<" + s.ToString() + ">";
}

TEST(OpenFamiliesTest, TheCallersFamiliesAreCreatedThenReopenedOnEveryRun) {
  ScratchDir dir;
  auto ledger_options = std::make_shared<rocksdb::ColumnFamilyOptions>();
  ledger_options->write_buffer_size = 3 << 20;
  const std::vector<ColumnFamilySpec> families = {{"ledger", ledger_options}, {"audit", nullptr}};
  for (int run = 0; run < 3; ++run) {  // the second run is where "Column family already exists" bit
    IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(TestOptions(), dir.Sub("db"), families));
    ASSERT_NE(store->family("ledger"), nullptr);
    ASSERT_NE(store->family("audit"), nullptr);
    EXPECT_EQ(store->db()->GetOptions(store->family("ledger")).write_buffer_size, size_t{3} << 20);
    ASSERT_THAT(CommitWithLedger(*store, "evt-" + std::to_string(run), "run " + std::to_string(run)), IsOk());
    for (int earlier = 0; earlier <= run; ++earlier) {
      EXPECT_EQ(Ledger(*store, "evt-" + std::to_string(earlier)), "run " + std::to_string(earlier));
      EXPECT_EQ(store->Reserve("evt-" + std::to_string(earlier))->verdict, Verdict::kDuplicate);
    }
  }
  // Opened without naming them, the families are there all the same.
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(TestOptions(), dir.Sub("db")));
  EXPECT_EQ(Ledger(*store, "evt-0"), "run 0");
  EXPECT_NE(store->family("default"), nullptr);
  EXPECT_EQ(store->family("idem"), nullptr);  // the store's own: never the caller's
  EXPECT_EQ(store->family("no-such-family"), nullptr);
}

TEST(OpenFamiliesTest, NamesThatCannotBeTheCallersAreRefusedWithNothingOpened) {
  ScratchDir dir;
  for (const std::vector<ColumnFamilySpec>& bad :
       {std::vector<ColumnFamilySpec>{{"", nullptr}}, std::vector<ColumnFamilySpec>{{"default", nullptr}},
        std::vector<ColumnFamilySpec>{{"idem", nullptr}},
        std::vector<ColumnFamilySpec>{{"ledger", nullptr}, {"ledger", nullptr}}}) {
    EXPECT_THAT(Store::Open(TestOptions(), dir.Sub("db"), bad), StatusIs(absl::StatusCode::kInvalidArgument));
  }
  EXPECT_FALSE(std::filesystem::exists(dir.Sub("db") + "/CURRENT"));
}

// A fatal write error: Resume reopens the DB, and family() hands out the reopened DB's handle.
TEST(OpenFamiliesTest, TheHandlesComeBackAfterAResumeThatReopens) {
  ScratchDir dir;
  auto fs = std::make_shared<testing::FaultFs>();
  std::unique_ptr<rocksdb::Env> env = testing::EnvOver(fs);
  Options options = TestOptions();
  options.env = env.get();
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, dir.Sub("db"), {{"ledger", nullptr}}));
  ASSERT_THAT(CommitWithLedger(*store, "before", "1"), IsOk());
  fs->Arm(testing::Fault::kIoError);
  EXPECT_THAT(CommitWithLedger(*store, "during", "2"), StatusIs(absl::StatusCode::kUnavailable));
  fs->Clear();
  ASSERT_THAT(store->Resume(), IsOk());
  EXPECT_GE(store->GetStats().reopens, 1u);
  ASSERT_NE(store->family("ledger"), nullptr);
  EXPECT_EQ(Ledger(*store, "before"), "1");
  ASSERT_THAT(CommitWithLedger(*store, "after", "3"), IsOk());
  EXPECT_EQ(Ledger(*store, "after"), "3");
}

// A store kept under another name, beside a caller's family that happens to be called like the default
// store: opening with the default name must find that "idem" is the caller's, not a store, and refuse
// (adopting it would answer every committed ID as new), naming where the store is. Nothing is written.
TEST(OpenFamiliesTest, ACallersFamilyNamedLikeAStoreIsNeverAdopted) {
  ScratchDir dir;
  Options records = TestOptions();
  records.column_family = "records";
  {
    IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(records, dir.Sub("db"), {{"idem", nullptr}}));
    for (int i = 0; i < 20; ++i) {
      const std::string id = "evt-" + std::to_string(i);
      IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store->Reserve(id));
      rocksdb::WriteBatch effects;
      effects.Put(store->family("idem"), id, "caller's own");
      ASSERT_THAT(store->Commit(id, r.token, "", &effects), IsOk());
    }
  }
  {
    absl::StatusOr<std::unique_ptr<Store>> wrong = Store::Open(TestOptions(), dir.Sub("db"));
    EXPECT_THAT(wrong, StatusIs(absl::StatusCode::kFailedPrecondition));
    EXPECT_THAT(wrong.status().message(), ::testing::HasSubstr("'records'"));
  }
  // The real store is intact, and so is the caller's family, still without idem's options.
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(records, dir.Sub("db"), {{"idem", nullptr}}));
  for (int i = 0; i < 20; ++i) {
    const std::string id = "evt-" + std::to_string(i);
    EXPECT_EQ(store->Reserve(id)->verdict, Verdict::kDuplicate) << id;
    std::string value;
    EXPECT_TRUE(store->db()->Get(rocksdb::ReadOptions(), store->family("idem"), id, &value).ok());
  }
  EXPECT_EQ(store->db()->GetOptions(store->family("idem")).compaction_filter_factory, nullptr);
}

// A plain RocksDB whose family "idem" is somebody else's data, and no idem store anywhere: Open refuses
// it too (the data would get idem's expiry filter and its keys read as records).
TEST(OpenFamiliesTest, AnExistingFamilyWithoutStoreMetadataIsRefused) {
  ScratchDir dir;
  {
    rocksdb::Options plain;
    plain.create_if_missing = true;
    plain.create_missing_column_families = true;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {{"default", {}}, {"idem", {}}};
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(plain, dir.Sub("db"), cfs, &handles, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), handles[1], "k", "somebody's value").ok());
    for (auto* h : handles) ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
  }
  for (bool create : {true, false}) {
    Options options = TestOptions();
    options.create_if_missing = create;
    absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(options, dir.Sub("db"));
    EXPECT_THAT(store, StatusIs(absl::StatusCode::kFailedPrecondition)) << create;
    EXPECT_THAT(store.status().message(), ::testing::HasSubstr("'idem'"));
  }
}

}  // namespace
}  // namespace idem
