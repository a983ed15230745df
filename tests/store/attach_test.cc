// Attach: idem inside the caller's own DB, next to the caller's column families.
#include <string>
#include <vector>

#include "idem/store.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"
#include "tests/support/ledger_db.h"
#include "tests/support/test_util.h"

namespace idem {
namespace {

using ::idem::testing::FakeClock;
using ::idem::testing::IsOk;
using ::idem::testing::ManualOptions;
using ::idem::testing::ScratchDir;
using ::idem::testing::StatusIs;

using CallerDb = ::idem::testing::LedgerDb;

TEST(AttachTest, CommitsEffectsInCallersColumnFamilyAtomically) {
  ScratchDir dir;
  auto clock = std::make_shared<FakeClock>();
  Options options = ManualOptions(clock);
  CallerDb caller(dir.Sub("db"), ColumnFamilyOptionsFor(options));
  ASSERT_TRUE(caller.status.ok()) << caller.status.ToString();
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Attach(caller.db.get(), caller.idem(), options));

  IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store->Reserve("evt-1"));
  ASSERT_EQ(r.verdict, Verdict::kReserved);
  rocksdb::WriteBatch effects;
  effects.Put(caller.ledger(), "account-7", "100");
  ASSERT_THAT(store->Commit("evt-1", r.token, "applied", &effects), IsOk());
  std::string value;
  ASSERT_TRUE(caller.db->Get(rocksdb::ReadOptions(), caller.ledger(), "account-7", &value).ok());
  EXPECT_EQ(value, "100");
  EXPECT_EQ(store->Reserve("evt-1")->verdict, Verdict::kDuplicate);
  // The caller's own column families are untouched by idem's records.
  EXPECT_TRUE(caller.db->Get(rocksdb::ReadOptions(), caller.ledger(), "evt-1", &value).IsNotFound());

  // Expiry works in the attached column family with the store's clock.
  clock->Advance(options.ttl + absl::Seconds(1));
  ASSERT_THAT(store->CompactExpired(), IsOk());
  EXPECT_EQ(store->GetStats().expired_removed, 1u);
  ASSERT_TRUE(caller.db->Get(rocksdb::ReadOptions(), caller.ledger(), "account-7", &value).ok());
}

// A column family opened for one retention must not be attached for another: a FIFO column family
// with a 2 s TTL attached as a 24 h store would forget IDs after seconds.
TEST(AttachTest, ColumnFamilyOpenedForOtherRetentionLeaseOrProfileIsRefused) {
  ScratchDir dir;
  Options fifo = ManualOptions();
  fifo.compaction = CompactionProfile::kFifo;
  fifo.ttl = absl::Seconds(2);
  fifo.lease = absl::Seconds(1);
  CallerDb caller(dir.Sub("db"), ColumnFamilyOptionsFor(fifo));
  ASSERT_TRUE(caller.status.ok());
  Options day = ManualOptions();  // 24 h, leveled
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Attach(caller.db.get(), caller.idem(), day);
  EXPECT_THAT(store, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(std::string(store.status().message()), ::testing::HasSubstr("ttl 2s"));
  Options longer = fifo;
  longer.ttl = absl::Hours(24);
  EXPECT_THAT(Store::Attach(caller.db.get(), caller.idem(), longer), StatusIs(absl::StatusCode::kFailedPrecondition));
  Options other_lease = fifo;
  other_lease.lease = absl::Milliseconds(500);
  EXPECT_THAT(Store::Attach(caller.db.get(), caller.idem(), other_lease),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(Store::Attach(caller.db.get(), caller.idem(), fifo), IsOk());
}

// ColumnFamilyOptionsFor's result edited before the open: FIFO's size cap would delete live IDs.
TEST(AttachTest, EditedFifoOptionsThatDropIdsEarlyAreRefused) {
  ScratchDir dir;
  Options fifo = ManualOptions();
  fifo.compaction = CompactionProfile::kFifo;
  fifo.ttl = absl::Minutes(10);
  fifo.lease = absl::Seconds(10);
  rocksdb::ColumnFamilyOptions edited = ColumnFamilyOptionsFor(fifo);
  edited.compaction_options_fifo.max_table_files_size = 1 << 20;
  CallerDb caller(dir.Sub("db"), edited);
  ASSERT_TRUE(caller.status.ok());
  EXPECT_THAT(Store::Attach(caller.db.get(), caller.idem(), fifo), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST(AttachTest, ColumnFamilyOpenedWithoutIdemOptionsIsRefused) {
  ScratchDir dir;
  Options options;
  {
    CallerDb first(dir.Sub("db"), ColumnFamilyOptionsFor(options));
    ASSERT_TRUE(first.status.ok());
  }
  // The classic mistake: reopening the DB without passing idem's options for its column family.
  CallerDb caller(dir.Sub("db"), rocksdb::ColumnFamilyOptions());
  ASSERT_TRUE(caller.status.ok());
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Attach(caller.db.get(), caller.idem(), options);
  EXPECT_THAT(store, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(Store::Attach(caller.db.get(), nullptr, options), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(AttachTest, AttachedStoreSurvivesCallerReopen) {
  ScratchDir dir;
  Options options = ManualOptions();
  uint64_t token = 0;
  {
    CallerDb caller(dir.Sub("db"), ColumnFamilyOptionsFor(options));
    IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Attach(caller.db.get(), caller.idem(), options));
    IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store->Reserve("e"));
    token = r.token;
    ASSERT_THAT(store->Commit("e", r.token, "x"), IsOk());
    ASSERT_THAT(store->Close(), IsOk());
    // Close of an attached store leaves the caller's DB open and usable.
    ASSERT_TRUE(caller.db->Put(rocksdb::WriteOptions(), caller.ledger(), "k", "v").ok());
  }
  CallerDb caller(dir.Sub("db"), ColumnFamilyOptionsFor(options));
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Attach(caller.db.get(), caller.idem(), options));
  EXPECT_EQ(store->Reserve("e")->verdict, Verdict::kDuplicate);
  EXPECT_GT(store->Reserve("f")->token, token);
}

}  // namespace
}  // namespace idem
