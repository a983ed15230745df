// Expiry: reads hide expired records at once; the compaction filter (driven by the injected clock)
// removes them from disk, on demand, and on an idle store through the maintenance thread.
#include <string>

#include "idem/store.h"
#include "rocksdb/db.h"
#include "tests/support/test_util.h"

namespace idem {
namespace {

using ::idem::testing::FakeClock;
using ::idem::testing::IsOk;
using ::idem::testing::ScratchDir;
using ::idem::testing::WaitFor;

constexpr int kIds = 5000;

class ExpiryTest : public ::testing::Test {
 protected:
  void Open(absl::Duration maintenance_interval, CompactionProfile profile = CompactionProfile::kLeveled) {
    clock_ = std::make_shared<FakeClock>();
    options_.clock = clock_;
    options_.ttl = absl::Hours(1);
    options_.lease = absl::Minutes(1);
    options_.compaction = profile;
    options_.maintenance_interval = maintenance_interval;
    IDEM_ASSERT_OK_AND_ASSIGN(store_, Store::Open(options_, dir_.Sub("db")));
  }

  void CommitMany(int n, const std::string& prefix = "id-") {
    for (int i = 0; i < n; ++i) {
      const std::string id = prefix + std::to_string(i);
      absl::StatusOr<Reservation> r = store_->Reserve(id);
      ASSERT_THAT(r, IsOk());
      ASSERT_THAT(store_->Commit(id, r->token, "result-" + std::to_string(i)), IsOk());
    }
  }

  uint64_t Property(const std::string& name) {
    uint64_t value = 0;
    EXPECT_TRUE(store_->db()->GetIntProperty(store_->column_family(), name, &value));
    return value;
  }
  uint64_t LiveKeys() { return Property("rocksdb.estimate-num-keys"); }
  uint64_t SstBytes() { return Property("rocksdb.live-sst-files-size"); }

  void Flush() { ASSERT_TRUE(store_->db()->Flush(rocksdb::FlushOptions(), store_->column_family()).ok()); }

  // Counts records by iterating the column family (the metadata record at "" excluded).
  int CountRecords() {
    rocksdb::ReadOptions every_key;
    every_key.total_order_seek = true;  // the records column family has a prefix extractor
    std::unique_ptr<rocksdb::Iterator> it(store_->db()->NewIterator(every_key, store_->column_family()));
    int n = 0;
    for (it->SeekToFirst(); it->Valid(); it->Next()) n += it->key().empty() ? 0 : 1;
    return n;
  }

  ScratchDir dir_;
  std::shared_ptr<FakeClock> clock_;
  Options options_;
  std::unique_ptr<Store> store_;
};

TEST_F(ExpiryTest, ExpiredRecordReadsAsAbsentBeforeAnyCompaction) {
  Open(absl::ZeroDuration());
  CommitMany(10);
  Flush();
  clock_->Advance(options_.ttl);
  for (int i = 0; i < 10; ++i) {
    absl::StatusOr<Reservation> r = store_->Reserve("id-" + std::to_string(i));
    ASSERT_THAT(r, IsOk());
    EXPECT_EQ(r->verdict, Verdict::kReserved);
  }
  EXPECT_EQ(store_->GetStats().expired_removed, 0u) << "nothing was compacted: the read path alone hid them";
}

TEST_F(ExpiryTest, CompactExpiredRemovesExpiredRecordsFromDisk) {
  Open(absl::ZeroDuration());
  CommitMany(kIds);
  Flush();
  ASSERT_THAT(store_->CompactExpired(), IsOk());
  const uint64_t sst_before = SstBytes();
  ASSERT_EQ(CountRecords(), kIds);
  ASSERT_GT(sst_before, 20'000u);

  clock_->Advance(options_.ttl + absl::Seconds(1));
  ASSERT_THAT(store_->CompactExpired(), IsOk());
  EXPECT_EQ(CountRecords(), 0);
  EXPECT_LE(LiveKeys(), 1u);  // the metadata record
  EXPECT_LT(SstBytes(), sst_before / 20) << "before " << sst_before << " after " << SstBytes();
  EXPECT_EQ(store_->GetStats().expired_removed, static_cast<uint64_t>(kIds));
}

TEST_F(ExpiryTest, CompactionKeepsLiveRecords) {
  Open(absl::ZeroDuration());
  CommitMany(100, "old-");
  clock_->Advance(absl::Minutes(40));
  CommitMany(100, "new-");
  clock_->Advance(absl::Minutes(30));  // old ones past the TTL, new ones within it
  ASSERT_THAT(store_->CompactExpired(), IsOk());
  EXPECT_EQ(CountRecords(), 100);
  absl::StatusOr<Reservation> r = store_->Reserve("new-7");
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->verdict, Verdict::kDuplicate);
  EXPECT_EQ(r->result, "result-7");
}

TEST_F(ExpiryTest, ExpiredLeasesAreRemovedToo) {
  Open(absl::ZeroDuration());
  for (int i = 0; i < 50; ++i) ASSERT_THAT(store_->Reserve("lease-" + std::to_string(i)), IsOk());
  clock_->Advance(options_.lease);
  ASSERT_THAT(store_->CompactExpired(), IsOk());
  EXPECT_EQ(CountRecords(), 0);
}

// RocksDB 7.8.3 never revisits files on an idle DB; the maintenance thread must, judged by the
// injected clock. No write happens after the clock moves.
TEST_F(ExpiryTest, IdleStoreExpiresFlushedRecordsWithoutWrites) {
  Open(absl::Milliseconds(10));
  CommitMany(kIds);
  Flush();
  ASSERT_EQ(CountRecords(), kIds);
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(CountRecords(), kIds) << "nothing has expired yet: maintenance must not remove anything";

  clock_->Advance(options_.ttl + absl::Seconds(1));
  EXPECT_TRUE(WaitFor([&] { return CountRecords() == 0; }));
  EXPECT_EQ(store_->GetStats().expired_removed, static_cast<uint64_t>(kIds));
  EXPECT_EQ(CountRecords(), 0);
  EXPECT_LE(LiveKeys(), 1u);
}

TEST_F(ExpiryTest, IdleStoreExpiresRecordsStillInTheMemtable) {
  Open(absl::Milliseconds(10));
  CommitMany(1000);
  clock_->Advance(options_.ttl + absl::Seconds(1));
  EXPECT_TRUE(WaitFor([&] { return CountRecords() == 0; }));
  EXPECT_EQ(store_->GetStats().expired_removed, 1000u);
  EXPECT_EQ(CountRecords(), 0);
}

TEST_F(ExpiryTest, UniversalAndFifoProfilesOpenAndExpireOnRead) {
  for (CompactionProfile profile : {CompactionProfile::kUniversal, CompactionProfile::kFifo}) {
    store_.reset();
    ScratchDir dir;
    clock_ = std::make_shared<FakeClock>();
    options_.clock = clock_;
    options_.compaction = profile;
    options_.maintenance_interval = absl::ZeroDuration();
    options_.durable_reservations = true;  // the reservation after expiry is a record that stays
    IDEM_ASSERT_OK_AND_ASSIGN(store_, Store::Open(options_, dir.Sub("db")));
    CommitMany(100);
    Flush();
    EXPECT_EQ(store_->Reserve("id-1")->verdict, Verdict::kDuplicate);
    clock_->Advance(options_.ttl);
    EXPECT_EQ(store_->Reserve("id-1")->verdict, Verdict::kReserved);
    ASSERT_THAT(store_->CompactExpired(), IsOk());
    if (profile == CompactionProfile::kUniversal) {
      EXPECT_EQ(CountRecords(), 1) << "only the reservation made after expiry remains";
      EXPECT_EQ(store_->GetStats().expired_removed, 99u) << "id-1 was overwritten, not filtered";
    }
    store_.reset();
  }
}

}  // namespace
}  // namespace idem
