// Storage faults under the store: a failed write is reported as kUnavailable (outcome unknown), the
// store says it is unhealthy, Resume brings it back (reopening the DB when RocksDB cannot resume), and
// afterwards every acknowledged commit is there and nothing unacknowledged reads as done.
#include <string>
#include <vector>

#include "idem/store.h"
#include "tests/fault_fs.h"
#include "tests/test_util.h"

namespace idem {
namespace {

using ::idem::testing::Fault;
using ::idem::testing::FaultFs;
using ::idem::testing::IsOk;
using ::idem::testing::ScratchDir;
using ::idem::testing::StatusIs;

class StoreFailureTest : public ::testing::TestWithParam<std::tuple<Fault, bool>> {
 protected:
  void SetUp() override {
    fs_ = std::make_shared<FaultFs>();
    env_ = testing::EnvOver(fs_);
    options_.env = env_.get();
    options_.maintenance_interval = absl::ZeroDuration();
    options_.durable_reservations = std::get<1>(GetParam());
    IDEM_ASSERT_OK_AND_ASSIGN(store_, Store::Open(options_, dir_.Sub("db")));
  }

  ScratchDir dir_;
  std::shared_ptr<FaultFs> fs_;
  std::unique_ptr<rocksdb::Env> env_;
  Options options_;
  std::unique_ptr<Store> store_;
};

TEST_P(StoreFailureTest, FailedWriteIsUnavailableAndStoreRecoversWithEverythingAcknowledged) {
  std::vector<std::string> acknowledged;
  for (int i = 0; i < 50; ++i) {
    const std::string id = "before-" + std::to_string(i);
    absl::StatusOr<Reservation> r = store_->Reserve(id);
    ASSERT_THAT(r, IsOk());
    ASSERT_THAT(store_->Commit(id, r->token, "ok"), IsOk());
    acknowledged.push_back(id);
  }
  const absl::StatusOr<Reservation> held = store_->Reserve("during");
  ASSERT_THAT(held, IsOk());

  fs_->Arm(std::get<0>(GetParam()));
  absl::Status failed = store_->Commit("during", held->token, "lost?");
  EXPECT_THAT(failed, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(failed.message(), ::testing::HasSubstr("outcome unknown"));
  EXPECT_THAT(store_->Health(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_GT(fs_->injected(), 0u);
  // Reads keep answering while writes are refused.
  absl::StatusOr<Reservation> dup = store_->Reserve("before-3");
  ASSERT_THAT(dup, IsOk());
  EXPECT_EQ(dup->verdict, Verdict::kDuplicate);
  // While the fault lasts, recovery fails and says so.
  EXPECT_THAT(store_->Resume(), StatusIs(absl::StatusCode::kUnavailable));

  fs_->Clear();
  ASSERT_THAT(store_->Resume(), IsOk());
  EXPECT_THAT(store_->Health(), IsOk());
  for (const std::string& id : acknowledged) {
    absl::StatusOr<Reservation> r = store_->Reserve(id);
    ASSERT_THAT(r, IsOk());
    EXPECT_EQ(r->verdict, Verdict::kDuplicate) << id;
  }
  // The failed commit's outcome was unknown; whatever it was, the store now tells the truth and the
  // holder can finish: either it landed (kDuplicate) or the ID is still its own to commit.
  absl::StatusOr<Reservation> during = store_->Reserve("during");
  ASSERT_THAT(during, IsOk());
  if (during->verdict != Verdict::kDuplicate) {
    EXPECT_THAT(store_->Commit("during", held->token, "retried"), IsOk());
  }
  // And new work proceeds.
  absl::StatusOr<Reservation> fresh = store_->Reserve("after");
  ASSERT_THAT(fresh, IsOk());
  EXPECT_EQ(fresh->verdict, Verdict::kReserved);
  EXPECT_GT(fresh->token, held->token);
  EXPECT_THAT(store_->Commit("after", fresh->token), IsOk());
}

INSTANTIATE_TEST_SUITE_P(Faults, StoreFailureTest,
                         ::testing::Combine(::testing::Values(Fault::kIoError, Fault::kNoSpace), ::testing::Bool()));

}  // namespace
}  // namespace idem
