// The Kafka adapter (idem/kafka.h) against librdkafka 2.0.2's mock cluster, with the ledger consumer of
// examples/kafka: joins, rebalances with commits in flight, restores (from the log, a snapshot, a clean
// local copy), a truncated changelog, many partitions per process. Members in child processes (killed
// with SIGKILL, stopped past the session timeout) are in kafka_failover_test.cc.
//
// The mock's group timings are fixed (a first join takes 3 s, a rebalance session.timeout.ms - 1000 ms),
// so these tests wait on the system's state, with generous limits, and never assert a duration.
#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include "examples/kafka/ledger.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "idem/kafka.h"
#include "idem/kafka_mock.h"
#include "tests/kafka_util.h"
#include "tests/test_util.h"

namespace idem {
namespace {

using ::idem::testing::IsOk;
using ::idem::testing::ScratchDir;
using ::idem::testing::StatusIs;
using ::idem::testing::WaitFor;
using ::idem::testing::kafka::Member;
using ::idem::testing::kafka::MemberOptions;
using ::idem::testing::kafka::RestoreAll;

class KafkaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    IDEM_ASSERT_OK_AND_ASSIGN(cluster_, KafkaMockCluster::Create(1));
    ASSERT_THAT(cluster_->CreateTopic("deposits", kPartitions), IsOk());
    ASSERT_THAT(cluster_->CreateTopic("deposits-changelog", kPartitions), IsOk());
  }

  MemberOptions Options(const std::string& name) {
    MemberOptions m;
    m.bootstrap = cluster_->bootstrap_servers();
    m.state_dir = dir_.Sub(name);
    m.name = name;
    return m;
  }

  // Every input partition's committed offset at its end.
  bool AllCommitted() { return testing::kafka::AllCommitted(cluster_.get(), "ledger", "deposits", kPartitions); }

  static constexpr int kPartitions = 4;
  ScratchDir dir_;
  std::unique_ptr<KafkaMockCluster> cluster_;
};

// One member joins, applies every deposit once (the producer's duplicates answered as such), and a new
// member with an empty disk, given the same input again, restores the state from the changelog and
// applies nothing twice.
TEST_F(KafkaTest, JoinsAppliesOnceAndANewMemberRestoresFromTheChangelog) {
  const std::vector<ledger::Deposit> deposits = ledger::Deposits(2000, 50);
  ASSERT_THAT(ledger::Produce(cluster_->bootstrap_servers(), "deposits", deposits, /*duplicate_every=*/10), IsOk());
  {
    Member a(Options("a"));
    ASSERT_TRUE(WaitFor([&] { return AllCommitted(); }, absl::Seconds(60)));
    const KafkaConsumerStats s = a.Stats();
    EXPECT_EQ(s.applied, deposits.size());
    EXPECT_EQ(s.duplicates, deposits.size() / 10);
    EXPECT_EQ(s.claims, static_cast<uint64_t>(kPartitions));
    EXPECT_GT(s.changelog_records, 0u);
    EXPECT_EQ(s.dead_letters, 0u);
  }
  ledger::Verdict before = ledger::Verify(deposits, RestoreAll(cluster_.get(), dir_.Sub("verify-1"), kPartitions));
  EXPECT_TRUE(before.ok()) << before.ToString();

  // The same deposits again (a producer that replays its whole log): all duplicates for a member that
  // restored from the changelog on an empty disk.
  ASSERT_THAT(ledger::Produce(cluster_->bootstrap_servers(), "deposits", deposits), IsOk());
  {
    Member b(Options("b"));
    ASSERT_TRUE(WaitFor([&] { return AllCommitted(); }, absl::Seconds(60)));
    const KafkaConsumerStats s = b.Stats();
    EXPECT_EQ(s.applied, 0u);
    EXPECT_EQ(s.duplicates, deposits.size());
    EXPECT_EQ(s.restores, static_cast<uint64_t>(kPartitions));
    EXPECT_EQ(s.catch_ups, 0u);
  }
  ledger::Verdict after = ledger::Verify(deposits, RestoreAll(cluster_.get(), dir_.Sub("verify-2"), kPartitions));
  EXPECT_TRUE(after.ok()) << after.ToString();
}

}  // namespace
}  // namespace idem
