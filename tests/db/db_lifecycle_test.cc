// DbLifecycle (engine/db/db_lifecycle.h), the one state machine of a DB in the house: families created
// and dropped while it is open, a reopen's hooks in their order with no Pin out, the generation that
// tells a borrower its handles are gone, a Pin that waits for a reopen, and refusals that name their
// subject.
#include "engine/db/db_lifecycle.h"

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "rocksdb/db.h"
#include "testing/fault_fs.h"
#include "tests/support/test_util.h"

namespace idem::engine {
namespace {

using ::idem::testing::IsOk;
using ::idem::testing::ScratchDir;
using ::idem::testing::StatusIs;

// Opens `path` with every family it has; never creates on a reopen (`create` false).
absl::StatusOr<OpenedDb> OpenAll(const std::string& path, rocksdb::Env* env, bool create) {
  rocksdb::DBOptions options;
  options.create_if_missing = create;
  options.env = env;
  std::vector<std::string> names;
  if (!rocksdb::DB::ListColumnFamilies(options, path, &names).ok()) {
    if (!create) return absl::NotFoundError("no DB");
    names = {rocksdb::kDefaultColumnFamilyName};
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& name : names) descriptors.emplace_back(name, rocksdb::ColumnFamilyOptions());
  OpenedDb opened;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, path, descriptors, &opened.handles, &raw);
  if (!s.ok()) return absl::UnavailableError(s.ToString());
  opened.db.reset(raw);
  opened.records = opened.handles[0];
  return opened;
}

class DbLifecycleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    env_ = testing::EnvOver(fs_);
    path_ = dir_.Sub("db");
    absl::StatusOr<OpenedDb> opened = OpenAll(path_, env_.get(), true);
    ASSERT_THAT(opened.status(), IsOk());
    lifecycle_ = std::make_unique<DbLifecycle>(
        *std::move(opened), [this] { return OpenAll(path_, env_.get(), false); }, nullptr);
  }

  // A fatal WAL error: RocksDB cannot resume in place, so the next Resume reopens.
  void BreakTheWal() {
    DbLifecycle::Pin pin(*lifecycle_);
    ASSERT_TRUE(pin.ok());
    fs_->Arm(testing::Fault::kIoError);
    rocksdb::WriteOptions synced;
    synced.sync = true;
    EXPECT_FALSE(lifecycle_->db()->Put(synced, "broken", "1").ok());
    lifecycle_->ReportWriteError(absl::UnavailableError("the WAL write failed"));
    fs_->Clear();
  }

  ScratchDir dir_;
  std::shared_ptr<testing::FaultFs> fs_ = std::make_shared<testing::FaultFs>();
  std::unique_ptr<rocksdb::Env> env_;
  std::string path_;
  std::unique_ptr<DbLifecycle> lifecycle_;
};

TEST_F(DbLifecycleTest, FamiliesAreCreatedAndDroppedWhileOpenAndADroppedHandleLivesUntilClose) {
  DbLifecycle::Pin pin(*lifecycle_);
  ASSERT_TRUE(pin.ok());
  absl::StatusOr<rocksdb::ColumnFamilyHandle*> created =
      lifecycle_->CreateFamily("p:a:0", rocksdb::ColumnFamilyOptions());
  ASSERT_THAT(created.status(), IsOk());
  EXPECT_EQ(lifecycle_->handle("p:a:0"), *created);
  EXPECT_THAT(lifecycle_->CreateFamily("p:a:0", rocksdb::ColumnFamilyOptions()).status(),
              StatusIs(absl::StatusCode::kAlreadyExists));
  ASSERT_TRUE(lifecycle_->db()->Put(rocksdb::WriteOptions(), *created, "k", "v").ok());

  ASSERT_THAT(lifecycle_->DropFamily("p:a:0"), IsOk());
  EXPECT_EQ(lifecycle_->handle("p:a:0"), nullptr);
  // A caller that took the handle before the drop may still use it (ASan would see a freed one).
  EXPECT_EQ((*created)->GetName(), "p:a:0");
  EXPECT_THAT(lifecycle_->DropFamily("p:a:0"), IsOk());  // none: nothing to do
  EXPECT_THAT(lifecycle_->DropFamily("never"), IsOk());

  // A family of the same name can be made again: a fresh, empty one.
  absl::StatusOr<rocksdb::ColumnFamilyHandle*> again =
      lifecycle_->CreateFamily("p:a:0", rocksdb::ColumnFamilyOptions());
  ASSERT_THAT(again.status(), IsOk());
  std::string value;
  EXPECT_TRUE(lifecycle_->db()->Get(rocksdb::ReadOptions(), *again, "k", &value).IsNotFound());
}

TEST_F(DbLifecycleTest, ACallersDbHasNoFamiliesOfTheLifecycles) {
  DbLifecycle::Pin owned(*lifecycle_);
  ASSERT_TRUE(owned.ok());
  DbLifecycle callers(lifecycle_->db(), lifecycle_->records());
  DbLifecycle::Pin pin(callers);
  ASSERT_TRUE(pin.ok());
  EXPECT_THAT(callers.CreateFamily("x", rocksdb::ColumnFamilyOptions()).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(callers.DropFamily("default"), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(callers.handle("default"), nullptr);
}

TEST_F(DbLifecycleTest, AReopenLetsGoBeforeItClosesHandsOutAfterAndMovesTheGeneration) {
  {
    DbLifecycle::Pin pin(*lifecycle_);
    ASSERT_TRUE(pin.ok());
    IDEM_ASSERT_OK_AND_ASSIGN(rocksdb::ColumnFamilyHandle * family,
                              lifecycle_->CreateFamily("p:a:0", rocksdb::ColumnFamilyOptions()));
    rocksdb::WriteOptions synced;
    synced.sync = true;
    ASSERT_TRUE(lifecycle_->db()->Put(synced, family, "kept", "1").ok());
  }
  const uint64_t before = lifecycle_->generation();
  std::vector<std::string> calls;
  DbLifecycle::Hooks hooks;
  hooks.before_reopen = [&] {
    // The old DB is still open, and no Pin is granted.
    EXPECT_NE(lifecycle_->db(), nullptr);
    DbLifecycle::Pin refused(*lifecycle_);
    EXPECT_FALSE(refused.ok());
    EXPECT_THAT(refused.status(), StatusIs(absl::StatusCode::kUnavailable));
    calls.push_back("before");
  };
  hooks.on_reopen = [&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle*) {
    rocksdb::ColumnFamilyHandle* family = lifecycle_->handle("p:a:0");
    EXPECT_NE(family, nullptr);
    std::string value;
    EXPECT_TRUE(db->Get(rocksdb::ReadOptions(), family, "kept", &value).ok());
    calls.push_back("after");
    return absl::OkStatus();
  };
  lifecycle_->SetHooks(std::move(hooks));
  BreakTheWal();
  ASSERT_THAT(lifecycle_->Resume(), IsOk());
  EXPECT_EQ(calls, (std::vector<std::string>{"before", "after"}));
  EXPECT_EQ(lifecycle_->generation(), before + 1);
  EXPECT_EQ(lifecycle_->state(), DbLifecycle::State::kOpen);
  DbLifecycle::Pin pin(*lifecycle_);
  EXPECT_TRUE(pin.ok());
}

TEST_F(DbLifecycleTest, APinThatWaitsForAReopenGetsTheReopenedDb) {
  std::thread waiter;
  std::atomic<bool> waited_ok{false};
  std::atomic<uint64_t> seen_generation{0};
  DbLifecycle::Hooks hooks;
  hooks.before_reopen = [&] {
    std::atomic<bool> started{false};
    waiter = std::thread([&] {
      started = true;
      // Refused without waiting; let in, on the reopened DB, when waiting.
      EXPECT_FALSE(DbLifecycle::Pin(*lifecycle_).ok());
      DbLifecycle::Pin pin(*lifecycle_, DbLifecycle::Wait::kWaitForReopen);
      waited_ok = pin.ok();
      if (pin.ok()) seen_generation = lifecycle_->generation();
    });
    while (!started.load()) std::this_thread::yield();
  };
  lifecycle_->SetHooks(std::move(hooks));
  const uint64_t before = lifecycle_->generation();
  BreakTheWal();
  ASSERT_THAT(lifecycle_->Resume(), IsOk());
  waiter.join();
  EXPECT_TRUE(waited_ok.load());
  EXPECT_EQ(seen_generation.load(), before + 1);
}

TEST_F(DbLifecycleTest, AReopenThatFindsNoDbIsDataLossAndRefusalsNameTheirSubject) {
  lifecycle_->SetSubject("the partition set");
  BreakTheWal();
  {
    // The directory goes while the DB is broken: the reopen must not make an empty one.
    DbLifecycle::Hooks hooks;
    hooks.before_reopen = [&] { path_ = dir_.Sub("elsewhere"); };
    lifecycle_->SetHooks(std::move(hooks));
  }
  const absl::Status resumed = lifecycle_->Resume();
  EXPECT_THAT(resumed, StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(std::string(resumed.message()), ::testing::HasSubstr("the partition set"));
  EXPECT_EQ(lifecycle_->state(), DbLifecycle::State::kDown);
  DbLifecycle::Pin down(*lifecycle_, DbLifecycle::Wait::kWaitForReopen);
  EXPECT_THAT(down.status(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(std::string(down.status().message()), ::testing::HasSubstr("the partition set is down"));
  ASSERT_THAT(lifecycle_->Close(), IsOk());
  DbLifecycle::Pin closed(*lifecycle_);
  EXPECT_THAT(closed.status(), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(std::string(closed.status().message()), ::testing::HasSubstr("the partition set is closed"));
}

TEST_F(DbLifecycleTest, AReopenWhoseHandOutFailsClosesTheDbAgainAndALaterResumeRecovers) {
  bool refuse = true;
  DbLifecycle::Hooks hooks;
  hooks.on_reopen = [&](rocksdb::DB*, rocksdb::ColumnFamilyHandle*) {
    return refuse ? absl::UnavailableError("a store could not read its metadata") : absl::OkStatus();
  };
  lifecycle_->SetHooks(std::move(hooks));
  BreakTheWal();
  const uint64_t before = lifecycle_->generation();
  EXPECT_THAT(lifecycle_->Resume(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(lifecycle_->state(), DbLifecycle::State::kDown);
  // Closed again: nothing of the reopened DB is left to a borrower.
  EXPECT_EQ(lifecycle_->handle(rocksdb::kDefaultColumnFamilyName), nullptr);
  EXPECT_GT(lifecycle_->generation(), before + 1);
  EXPECT_FALSE(DbLifecycle::Pin(*lifecycle_).ok());
  refuse = false;
  ASSERT_THAT(lifecycle_->Resume(), IsOk());
  DbLifecycle::Pin pin(*lifecycle_);
  ASSERT_TRUE(pin.ok());
  EXPECT_NE(lifecycle_->handle(rocksdb::kDefaultColumnFamilyName), nullptr);
}

}  // namespace
}  // namespace idem::engine
