// The store's own metadata (identity, token high-water mark) lives where no expiry can reach it, is
// validated on open, and the token space never wraps.
#include <limits>
#include <string>

#include "engine/records/record.h"
#include "engine/records/store_metadata.h"
#include "idem/store.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"
#include "tests/support/test_util.h"
#include "tools/simulated_time.h"

namespace idem {
namespace {

using ::idem::testing::IsOk;
using ::idem::testing::ManualOptions;
using ::idem::testing::ScratchDir;
using ::idem::testing::StatusIs;

// Opens the store's DB directly, as an operator's tool or a corrupting disk would reach it.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    rocksdb::DBOptions options;
    std::vector<std::string> names;
    status = rocksdb::DB::ListColumnFamilies(options, path, &names);
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const auto& n : names) cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
    rocksdb::DB* raw = nullptr;
    if (status.ok()) status = rocksdb::DB::Open(options, path, cfs, &handles, &raw);
    db.reset(raw);
  }
  ~RawDb() {
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  }
  rocksdb::ColumnFamilyHandle* Cf(const std::string& name) {
    for (auto* h : handles) {
      if (h->GetName() == name) return h;
    }
    return nullptr;
  }
  engine::StoreMetadata Metadata() {
    std::string value;
    EXPECT_TRUE(db->Get(rocksdb::ReadOptions(), engine::MetadataKey("idem"), &value).ok());
    absl::StatusOr<engine::StoreMetadata> m = engine::DecodeMetadata(value);
    EXPECT_THAT(m, IsOk());
    return m.ok() ? *m : engine::StoreMetadata{};
  }
  void PutMetadata(const std::string& value) {
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), engine::MetadataKey("idem"), value).ok());
  }
  rocksdb::Status status;
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
};

// FIFO drops whole files by age. The token mark must not go with them: a restarted store would hand out
// tokens that downstream systems have already seen. RocksDB and idem share a simulated clock, so files
// age out without sleeping.
TEST(MetadataTest, TokensNeverRepeatAfterFifoDropsEveryFile) {
  ScratchDir dir;
  auto sim = std::make_shared<tools::SimulatedClock>(absl::ToUnixMicros(absl::Now()));
  tools::SimulatedTimeEnv env(sim);
  Options options = ManualOptions(sim);
  options.compaction = CompactionProfile::kFifo;
  options.ttl = absl::Minutes(1);
  options.lease = absl::Seconds(10);
  options.env = &env;
  options.recent_commits_cache_entries = 0;
  uint64_t highest = 0;
  {
    IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, dir.Sub("db")));
    for (int i = 0; i < 50; ++i) {
      const std::string id = "evt-" + std::to_string(i);
      IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store->Reserve(id));
      ASSERT_THAT(store->Commit(id, r.token, "ok"), IsOk());
      highest = std::max(highest, r.token);
    }
    ASSERT_THAT(store->CompactExpired(), IsOk());  // into an SST file
    sim->AdvanceTo(sim->micros() + absl::ToInt64Microseconds(absl::Minutes(3)));
    // A new file makes FIFO look at ages and drop the old ones.
    IDEM_ASSERT_OK_AND_ASSIGN(Reservation late, store->Reserve("late"));
    ASSERT_THAT(store->Commit("late", late.token, "ok"), IsOk());
    highest = std::max(highest, late.token);
    ASSERT_THAT(store->CompactExpired(), IsOk());
    ASSERT_TRUE(testing::WaitFor([&] { return store->Peek("evt-0").status().code() == absl::StatusCode::kNotFound; }))
        << "FIFO never dropped the old file; the test would prove nothing";
  }
  for (int restart = 0; restart < 3; ++restart) {
    IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, dir.Sub("db")));
    IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store->Reserve("after-" + std::to_string(restart)));
    EXPECT_GT(r.token, highest) << "a token was handed out again after FIFO dropped the files";
    highest = std::max(highest, r.token);
  }
}

TEST(MetadataTest, MarkAtTheEndOfTheTokenSpaceRefusesInsteadOfWrapping) {
  ScratchDir dir;
  Options options = ManualOptions();
  { IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, dir.Sub("db"))); }
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  {
    RawDb raw(dir.Sub("db"));
    ASSERT_TRUE(raw.status.ok()) << raw.status.ToString();
    engine::StoreMetadata m = raw.Metadata();
    m.token_high_water = kMax - 2;
    raw.PutMetadata(engine::EncodeMetadata(m));
  }
  {
    IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, dir.Sub("db")));
    IDEM_ASSERT_OK_AND_ASSIGN(Reservation a, store->Reserve("a"));
    IDEM_ASSERT_OK_AND_ASSIGN(Reservation b, store->Reserve("b"));
    EXPECT_EQ(a.token, kMax - 1);
    EXPECT_EQ(b.token, kMax);
    absl::StatusOr<Reservation> c = store->Reserve("c");
    EXPECT_THAT(c, StatusIs(absl::StatusCode::kFailedPrecondition));
    EXPECT_THAT(std::string(c.status().message()), ::testing::HasSubstr("used up"));
    // Answers that need no token still work.
    EXPECT_EQ(store->Reserve("a")->verdict, Verdict::kInFlight);
  }
  // Reopened at the very end: no token 0, no wrap.
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, dir.Sub("db")));
  EXPECT_THAT(store->Reserve("d"), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST(MetadataTest, CorruptMetadataIsDataLossOnOpen) {
  ScratchDir dir;
  Options options = ManualOptions();
  { IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, dir.Sub("db"))); }
  {
    RawDb raw(dir.Sub("db"));
    raw.PutMetadata("\x4e-not-metadata");
  }
  EXPECT_THAT(Store::Open(options, dir.Sub("db")), StatusIs(absl::StatusCode::kDataLoss));
}

// A store written before the metadata moved kept its mark in the records column family; it is carried
// over, and tokens already in records count too.
TEST(MetadataTest, LegacyMarkAndRecordTokensAreCarriedOver) {
  ScratchDir dir;
  Options options = ManualOptions();
  { IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, dir.Sub("db"))); }
  {
    RawDb raw(dir.Sub("db"));
    ASSERT_TRUE(raw.db->Delete(rocksdb::WriteOptions(), engine::MetadataKey("idem")).ok());
    ASSERT_TRUE(raw.db->Put(rocksdb::WriteOptions(), raw.Cf("idem"), "", engine::EncodeMeta(1 << 20)).ok());
    engine::Record held;
    held.deadline_us = absl::ToUnixMicros(absl::Now() + absl::Hours(1));
    held.token = (1 << 21) + 5;
    ASSERT_TRUE(raw.db->Put(rocksdb::WriteOptions(), raw.Cf("idem"), "old", engine::EncodeRecord(held)).ok());
  }
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, dir.Sub("db")));
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store->Reserve("new"));
  EXPECT_GT(r.token, uint64_t{(1 << 21) + 5});
  // The legacy store keeps its plain keys, and its reservation's holder is gone: taken over at once.
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation old, store->Reserve("old"));
  EXPECT_EQ(old.verdict, Verdict::kReserved);
  EXPECT_TRUE(old.takeover && old.holder_gone);
  EXPECT_EQ(old.previous_token, uint64_t{(1 << 21) + 5});
}

// A store made by the previous release (metadata without a layout byte: IDs are keys as they are)
// opens with this release's hash memtable, answers what it holds, keeps writing plain keys (IDs of one
// byte included, shorter than the memtable's 8-byte buckets) and keeps its metadata readable by the
// previous release.
TEST(MetadataTest, StoreOfThePreviousReleaseKeepsItsPlainLayout) {
  ScratchDir dir;
  Options options = ManualOptions();
  { IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, dir.Sub("db"))); }
  {
    RawDb raw(dir.Sub("db"));
    std::string value;
    ASSERT_TRUE(raw.db->Get(rocksdb::ReadOptions(), engine::MetadataKey("idem"), &value).ok());
    IDEM_ASSERT_OK_AND_ASSIGN(engine::StoreMetadata metadata, engine::DecodeMetadata(value));
    metadata.layout = engine::KeyLayout::kPlain;
    ASSERT_EQ(engine::EncodeMetadata(metadata).size(), 25u) << "the previous release's metadata";
    ASSERT_TRUE(
        raw.db->Put(rocksdb::WriteOptions(), engine::MetadataKey("idem"), engine::EncodeMetadata(metadata)).ok());
    engine::Record done;
    done.state = engine::RecordState::kDone;
    done.deadline_us = absl::ToUnixMicros(absl::Now() + absl::Hours(1));
    done.token = 3;
    done.result = "kept";
    ASSERT_TRUE(raw.db->Put(rocksdb::WriteOptions(), raw.Cf("idem"), "x", engine::EncodeRecord(done)).ok());
  }
  {
    IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, dir.Sub("db")));
    IDEM_ASSERT_OK_AND_ASSIGN(Reservation dup, store->Reserve("x"));
    EXPECT_EQ(dup.verdict, Verdict::kDuplicate);
    EXPECT_EQ(dup.result, "kept");
    for (const char* id : {"y", "z", "order-000001", "order-000002"}) {
      IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store->Reserve(id));
      ASSERT_EQ(r.verdict, Verdict::kReserved) << id;
      ASSERT_THAT(store->Commit(id, r.token, "r"), IsOk());
    }
  }
  RawDb raw(dir.Sub("db"));
  std::string value;
  EXPECT_TRUE(raw.db->Get(rocksdb::ReadOptions(), raw.Cf("idem"), "y", &value).ok()) << "written under its plain key";
  EXPECT_TRUE(raw.db->Get(rocksdb::ReadOptions(), raw.Cf("idem"), testing::StoredKey("y"), &value).IsNotFound());
  ASSERT_TRUE(raw.db->Get(rocksdb::ReadOptions(), engine::MetadataKey("idem"), &value).ok());
  EXPECT_EQ(value.size(), 25u) << "still the previous release's form";
}

// A new store hashes its keys, and says so in its metadata; a layout this release does not know is
// refused, not guessed at.
TEST(MetadataTest, NewStoreHashesItsKeysAndAnUnknownLayoutIsRefused) {
  ScratchDir dir;
  Options options = ManualOptions();
  {
    IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, dir.Sub("db")));
    IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store->Reserve("a"));
    ASSERT_THAT(store->Commit("a", r.token), IsOk());
  }
  {
    RawDb raw(dir.Sub("db"));
    std::string value;
    EXPECT_TRUE(raw.db->Get(rocksdb::ReadOptions(), raw.Cf("idem"), testing::StoredKey("a"), &value).ok());
    EXPECT_TRUE(raw.db->Get(rocksdb::ReadOptions(), raw.Cf("idem"), "a", &value).IsNotFound());
    ASSERT_TRUE(raw.db->Get(rocksdb::ReadOptions(), engine::MetadataKey("idem"), &value).ok());
    ASSERT_EQ(value.size(), 26u);
    EXPECT_EQ(value.back(), static_cast<char>(engine::KeyLayout::kHashed));
    value.back() = 9;
    ASSERT_TRUE(raw.db->Put(rocksdb::WriteOptions(), engine::MetadataKey("idem"), value).ok());
  }
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(options, dir.Sub("db"));
  EXPECT_THAT(store, StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(store.status().message(), ::testing::HasSubstr("key layout 9"));
}

// Open with create_if_missing = false refuses what is not already a store (an operator's tool, a
// mistyped path), creating nothing.
TEST(MetadataTest, OpenWithoutCreateRefusesWhatIsNotAStore) {
  ScratchDir dir;
  Options options = ManualOptions();
  options.create_if_missing = false;
  EXPECT_THAT(Store::Open(options, dir.Sub("missing")), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_FALSE(std::filesystem::exists(dir.Sub("missing/CURRENT")));
  {
    RawDb plain(dir.path());  // an empty directory
  }
  Options create = options;
  create.create_if_missing = true;
  { IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(create, dir.Sub("db"))); }
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, dir.Sub("db")));
  Options other = options;
  other.column_family = "other";
  EXPECT_THAT(Store::Open(other, dir.Sub("db2")), StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace idem
