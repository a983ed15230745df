// What Commit does with the caller's effects batch: effects and marker land together or not at all,
// and effects can never write idem's own records or metadata.
#include <string>

#include "idem/store.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"
#include "tests/support/ledger_db.h"
#include "tests/support/test_util.h"

namespace idem {
namespace {

using ::idem::testing::IsOk;
using ::idem::testing::ManualOptions;
using ::idem::testing::ScratchDir;
using ::idem::testing::StatusIs;

class EffectsTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    options_ = ManualOptions();
    options_.durable_reservations = GetParam();
    caller_ = std::make_unique<testing::LedgerDb>(dir_.Sub("db"), ColumnFamilyOptionsFor(options_));
    ASSERT_TRUE(caller_->status.ok()) << caller_->status.ToString();
    IDEM_ASSERT_OK_AND_ASSIGN(store_, Store::Attach(caller_->db.get(), caller_->idem(), options_));
  }
  bool LedgerHas(const std::string& key) {
    std::string value;
    return caller_->db->Get(rocksdb::ReadOptions(), caller_->ledger(), key, &value).ok();
  }

  ScratchDir dir_;
  Options options_;
  std::unique_ptr<testing::LedgerDb> caller_;
  std::unique_ptr<Store> store_;
};

TEST_P(EffectsTest, ByteLimitedBatchThatRefusesTheMarkerWritesNothing) {
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store_->Reserve("evt-1"));
  rocksdb::WriteBatch effects(0, /*max_bytes=*/64);
  ASSERT_TRUE(effects.Put(caller_->ledger(), "account-7", std::string(30, 'x')).ok());
  // The effects fit; the marker does not.
  EXPECT_THAT(store_->Commit("evt-1", r.token, "applied", &effects), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_FALSE(LedgerHas("account-7"));
  EXPECT_EQ(effects.Count(), 1u);  // handed back as passed
  // Nothing was written: the reservation still holds and a bigger batch commits.
  rocksdb::WriteBatch bigger;
  bigger.Put(caller_->ledger(), "account-7", std::string(30, 'x'));
  ASSERT_THAT(store_->Commit("evt-1", r.token, "applied", &bigger), IsOk());
  EXPECT_TRUE(LedgerHas("account-7"));
  EXPECT_EQ(store_->Reserve("evt-1")->verdict, Verdict::kDuplicate);
}

TEST_P(EffectsTest, EffectsThatTouchIdemRecordsAreRefusedWithNothingWritten) {
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation other, store_->Reserve("evt-other"));
  ASSERT_THAT(store_->Commit("evt-other", other.token, "done"), IsOk());
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store_->Reserve("evt-1"));

  const auto attempts = std::vector<std::function<void(rocksdb::WriteBatch*)>>{
      [&](rocksdb::WriteBatch* b) { b->Delete(caller_->idem(), "evt-other"); },
      [&](rocksdb::WriteBatch* b) { b->Put(caller_->idem(), "evt-other", "forged"); },
      [&](rocksdb::WriteBatch* b) { b->SingleDelete(caller_->idem(), "evt-other"); },
      [&](rocksdb::WriteBatch* b) { b->DeleteRange(caller_->idem(), "a", "z"); },
      [&](rocksdb::WriteBatch* b) { b->Delete(caller_->idem(), ""); },
      // The store's metadata (identity, token high-water mark) in the default column family.
      [&](rocksdb::WriteBatch* b) { b->Delete(caller_->db->DefaultColumnFamily(), std::string("\0idem\0idem", 10)); },
      [&](rocksdb::WriteBatch* b) { b->Put(caller_->db->DefaultColumnFamily(), std::string("\0idem\0x", 7), "1"); },
      [&](rocksdb::WriteBatch* b) { b->DeleteRange(caller_->db->DefaultColumnFamily(), std::string("\0", 1), "z"); },
  };
  for (size_t i = 0; i < attempts.size(); ++i) {
    rocksdb::WriteBatch effects;
    effects.Put(caller_->ledger(), "account-" + std::to_string(i), "1");
    attempts[i](&effects);
    EXPECT_THAT(store_->Commit("evt-1", r.token, "x", &effects), StatusIs(absl::StatusCode::kInvalidArgument)) << i;
    EXPECT_FALSE(LedgerHas("account-" + std::to_string(i))) << i;
    // The batch form refuses the same request alone.
    const CommitRequest request{"evt-1", r.token, "x", &effects};
    std::vector<absl::Status> batch = store_->CommitBatch({&request, 1});
    EXPECT_THAT(batch[0], StatusIs(absl::StatusCode::kInvalidArgument)) << i;
  }
  EXPECT_EQ(store_->Reserve("evt-other")->verdict, Verdict::kDuplicate);
  // The reservation is intact: a proper commit still goes through.
  rocksdb::WriteBatch fine;
  fine.Put(caller_->ledger(), "account-ok", "1");
  ASSERT_THAT(store_->Commit("evt-1", r.token, "x", &fine), IsOk());
  EXPECT_TRUE(LedgerHas("account-ok"));
}

TEST_P(EffectsTest, OneBadRequestInABatchDoesNotStopTheOthers) {
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation a, store_->Reserve("evt-a"));
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation b, store_->Reserve("evt-b"));
  rocksdb::WriteBatch good, bad;
  good.Put(caller_->ledger(), "account-a", "1");
  bad.Put(caller_->ledger(), "account-b", "1");
  bad.Delete(caller_->idem(), "evt-a");
  const CommitRequest requests[] = {{"evt-a", a.token, "ok", &good}, {"evt-b", b.token, "ok", &bad}};
  std::vector<absl::Status> results = store_->CommitBatch(requests);
  EXPECT_THAT(results[0], IsOk());
  EXPECT_THAT(results[1], StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(LedgerHas("account-a"));
  EXPECT_FALSE(LedgerHas("account-b"));
  EXPECT_EQ(store_->Reserve("evt-a")->verdict, Verdict::kDuplicate);
}

INSTANTIATE_TEST_SUITE_P(Modes, EffectsTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "durable" : "in_memory"; });

}  // namespace
}  // namespace idem
