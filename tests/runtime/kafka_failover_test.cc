// Members as processes (tests/runtime/kafka_worker, the ledger member of testing/kafka_member.h) on librdkafka's mock
// cluster in this process: one SIGKILLed mid-run and replaced by a member on its (unclean) disk, and a
// zombie — a member stopped by SIGSTOP inside a handler, past the session timeout, then continued.
// Exactly-once is checked on the state the changelog holds, and on the owners' own copies.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "idem/kafka.h"
#include "idem/kafka_mock.h"
#include "testing/kafka_ledger.h"
#include "testing/kafka_member.h"
#include "tests/support/child_process.h"
#include "tests/support/kafka_util.h"
#include "tests/support/test_util.h"

#ifndef IDEM_KAFKA_WORKER
#error "IDEM_KAFKA_WORKER must name the worker binary"
#endif

namespace idem {
namespace {

using ::idem::testing::Child;
using ::idem::testing::IsOk;
using ::idem::testing::ScratchDir;
using ::idem::testing::WaitFor;
using ::idem::testing::kafka::AllCommitted;
using ::idem::testing::kafka::RestoreAll;

constexpr int kPartitions = 4;

class KafkaFailoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    IDEM_ASSERT_OK_AND_ASSIGN(cluster_, KafkaMockCluster::Create(1));
    ASSERT_THAT(cluster_->CreateTopic("deposits", kPartitions), IsOk());
    ASSERT_THAT(cluster_->CreateTopic("deposits-changelog", kPartitions), IsOk());
  }

  std::unique_ptr<Child> Worker(const std::string& disk, const std::string& stats,
                                std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {IDEM_KAFKA_WORKER,
                                     "--bootstrap=" + cluster_->bootstrap_servers(),
                                     "--group=ledger",
                                     "--input=deposits",
                                     "--changelog=deposits-changelog",
                                     "--state=" + dir_.Sub(disk),
                                     "--stats=" + dir_.Sub(stats + ".stats"),
                                     "--snapshot-bytes=65536"};
    args.insert(args.end(), extra.begin(), extra.end());
    return std::make_unique<Child>(args);
  }
  std::map<std::string, double> Stats(const std::string& stats) {
    return ledger::ReadMemberStats(dir_.Sub(stats + ".stats"));
  }

  std::thread Stream(const std::vector<ledger::Deposit>& deposits, std::atomic<bool>* done) {
    return ledger::Stream(cluster_->bootstrap_servers(), "deposits", deposits, 250, 150, 9, done);
  }

  // The final owners' clean copies equal what the changelog restores.
  void ExpectOwnersMatchTheChangelog(const std::vector<std::string>& disks) {
    ScratchDir verify;
    IDEM_ASSERT_OK_AND_ASSIGN(auto truth, PartitionSet::Open(PartitionSetOptions(), verify.Sub("set")));
    const KafkaRestoreOptions r = ledger::RestoreOptions(cluster_->bootstrap_servers());
    int compared = 0;
    for (int p = 0; p < kPartitions; ++p) {
      IDEM_ASSERT_OK_AND_ASSIGN(KafkaRestoreResult restored, RestoreFromChangelog(r, truth.get(), p));
      IDEM_ASSERT_OK_AND_ASSIGN(ledger::State expected, ledger::ReadCopy(truth.get(), "deposits", p));
      for (const std::string& disk : disks) {
        IDEM_ASSERT_OK_AND_ASSIGN(auto set, PartitionSet::Open(PartitionSetOptions(), dir_.Sub(disk)));
        for (const LocalCopy& copy : set->LocalCopies()) {
          if (copy.layout.name != "deposits/" + std::to_string(p) || !copy.clean || copy.claim != restored.claim) {
            continue;
          }
          IDEM_ASSERT_OK_AND_ASSIGN(ledger::State own, ledger::ReadCopy(set.get(), "deposits", p));
          EXPECT_EQ(own.balances, expected.balances) << disk << " partition " << p;
          EXPECT_EQ(own.applied, expected.applied) << disk << " partition " << p;
          ++compared;
        }
      }
    }
    // A partition whose last claim was made by a member stopped while it restored has no copy under that
    // claim (the next owner restores from the log); the others are compared.
    EXPECT_GE(compared, kPartitions / 2) << "the owners' copies were compared";
  }

  ScratchDir dir_;
  std::unique_ptr<KafkaMockCluster> cluster_;
};

// A member is SIGKILLed mid-stream; the survivor takes its partitions over, restoring them from the
// changelog; a new member started on the dead one's disk finds its copies unclean, drops them and
// restores what it is given. Nothing is missing and nothing is applied twice.
TEST_F(KafkaFailoverTest, ASigkilledMemberLosesNothingAndItsUncleanCopiesAreDropped) {
  const std::vector<ledger::Deposit> deposits = ledger::Deposits(6000, 60);
  std::atomic<bool> produced{false};
  std::thread stream = Stream(deposits, &produced);
  auto m1 = Worker("disk-1", "m1");
  auto m2 = Worker("disk-2", "m2");
  ASSERT_TRUE(WaitFor(
      [&] {
        return Stats("m1")["active_partitions"] > 0 && Stats("m2")["active_partitions"] > 0 &&
               Stats("m1")["applied"] > 200;
      },
      absl::Seconds(60)));
  m1->Kill();
  const auto killed = std::chrono::steady_clock::now();
  ASSERT_TRUE(WaitFor([&] { return Stats("m2")["active_partitions"] == kPartitions; }, absl::Seconds(60)));
  std::fprintf(stderr, "takeover after SIGKILL: %.1f s\n",
               std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count());

  auto m3 = Worker("disk-1", "m3");  // the dead member's disk: its copies were active, so unclean
  ASSERT_TRUE(WaitFor([&] { return Stats("m3")["active_partitions"] > 0; }, absl::Seconds(60)));
  stream.join();
  ASSERT_TRUE(produced);
  ASSERT_TRUE(
      WaitFor([&] { return AllCommitted(cluster_.get(), "ledger", "deposits", kPartitions); }, absl::Seconds(90)));
  m2->Signal(SIGTERM);
  m3->Signal(SIGTERM);
  m2->Wait();
  m3->Wait();
  auto s3 = Stats("m3");
  EXPECT_EQ(s3["final"], 1);
  EXPECT_GT(s3["restores"], 0);
  EXPECT_EQ(s3["catch_ups"], 0) << "an unclean copy must never be caught up";

  const ledger::Verdict v = ledger::Verify(deposits, RestoreAll(cluster_.get(), dir_.Sub("verify"), kPartitions));
  EXPECT_TRUE(v.ok()) << v.ToString();
  ExpectOwnersMatchTheChangelog({"disk-1", "disk-2"});
}

// A member stops (SIGSTOP) inside a handler, mid-batch, for longer than the session timeout; the other
// member takes its partitions over and claims them. Continued, the zombie finishes its batch: its
// commit lands in its local store and its changelog batch in the log after the newer claim, where every
// replay ignores it; its offset commits are refused by the group. The event it stalled on is applied
// once, by the new owner.
TEST_F(KafkaFailoverTest, AZombiePastTheSessionTimeoutIsFenced) {
  const std::vector<ledger::Deposit> deposits = ledger::Deposits(4000, 40);
  std::atomic<bool> produced{false};
  std::thread stream = Stream(deposits, &produced);
  auto zombie = Worker("disk-z", "z", {"--stall-on=evt-1200"});
  ASSERT_TRUE(WaitFor([&] { return zombie->Stopped(); }, absl::Seconds(60)));
  auto other = Worker("disk-o", "o");
  ASSERT_TRUE(WaitFor([&] { return Stats("o")["active_partitions"] == kPartitions; }, absl::Seconds(60)));
  zombie->Signal(SIGCONT);
  stream.join();
  ASSERT_TRUE(produced);
  ASSERT_TRUE(
      WaitFor([&] { return AllCommitted(cluster_.get(), "ledger", "deposits", kPartitions); }, absl::Seconds(90)));
  zombie->Signal(SIGTERM);
  other->Signal(SIGTERM);
  zombie->Wait();
  other->Wait();

  const ledger::Verdict v = ledger::Verify(deposits, RestoreAll(cluster_.get(), dir_.Sub("verify"), kPartitions));
  EXPECT_TRUE(v.ok()) << v.ToString();
  // The whole log replayed (an audit): the zombie's batch is there, and ignored.
  uint64_t fenced = 0;
  const ledger::Verdict audit =
      ledger::Verify(deposits, RestoreAll(cluster_.get(), dir_.Sub("audit"), kPartitions, "ledger", "deposits",
                                          "deposits-changelog", &fenced, /*from_log_start=*/true));
  EXPECT_TRUE(audit.ok()) << audit.ToString();
  auto z = Stats("z");
  std::fprintf(stderr, "zombie: %g offset commits refused, %g changelog batches fenced at replay\n",
               z["offset_commits_refused"], static_cast<double>(fenced));
  EXPECT_GE(fenced, 1u) << "the zombie's batch after the new claim";
  ExpectOwnersMatchTheChangelog({"disk-z", "disk-o"});
}

}  // namespace
}  // namespace idem
