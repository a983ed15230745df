// The Kafka adapter (idem/kafka.h) against librdkafka 2.0.2's mock cluster, with the ledger consumer of
// testing/kafka_ledger.h: joins, rebalances with commits in flight, restores (from the log, a snapshot, a clean
// local copy), a truncated changelog, many partitions per process. Members in child processes (killed
// with SIGKILL, stopped past the session timeout) are in kafka_failover_test.cc.
//
// The mock's group timings are fixed (a first join takes 3 s, a rebalance session.timeout.ms - 1000 ms),
// so these tests wait on the system's state, with generous limits, and never assert a duration.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "idem/fingerprint.h"
#include "idem/kafka.h"
#include "idem/kafka_mock.h"
#include "testing/fault_fs.h"
#include "testing/kafka_ledger.h"
#include "tests/support/kafka_util.h"
#include "tests/support/test_util.h"

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

// A second member joins while deposits keep arriving and the first commits: the cooperative rebalance
// moves partitions with their state, and the union of the partitions' states (restored from the
// changelog) holds every deposit exactly once. (The mock refuses offset commits during a rebalance:
// that costs redeliveries, answered as duplicates, never a second application.)
TEST_F(KafkaTest, ARebalanceWithCommitsInFlightLosesNothingAndAppliesNothingTwice) {
  const std::vector<ledger::Deposit> deposits = ledger::Deposits(6000, 40);
  std::atomic<bool> produced{false};
  std::thread producer = ledger::Stream(cluster_->bootstrap_servers(), "deposits", deposits, 300, 200, 7, &produced);
  Member a(Options("a"));
  ASSERT_TRUE(WaitFor([&] { return a.Stats().applied > 500; }, absl::Seconds(60)));
  Member b(Options("b"));
  ASSERT_TRUE(WaitFor([&] { return !b.Active().empty() && a.Active().size() < kPartitions; }, absl::Seconds(60)));
  producer.join();
  ASSERT_TRUE(produced);
  ASSERT_TRUE(WaitFor([&] { return AllCommitted(); }, absl::Seconds(90)));
  const KafkaConsumerStats sa = a.Stats(), sb = b.Stats();
  EXPECT_GT(sb.claims, 0u);
  EXPECT_GT(sa.revocations + sa.lost, 0u);              // lost: the mock refuses commits during the rebalance
  EXPECT_GE(sa.applied + sb.applied, deposits.size());  // a redelivery re-applied would fail Verify below
  ASSERT_THAT(a.Stop(), IsOk());
  ASSERT_THAT(b.Stop(), IsOk());
  const ledger::Verdict v = ledger::Verify(deposits, RestoreAll(cluster_.get(), dir_.Sub("verify"), kPartitions));
  EXPECT_TRUE(v.ok()) << v.ToString();
}

// With snapshots on, a new owner restores from the snapshot its pointer names (in the offset commit's
// metadata) and the log after it, not from the log's first record.
TEST_F(KafkaTest, ANewOwnerRestoresFromTheSnapshotThePointerNames) {
  const std::vector<ledger::Deposit> deposits = ledger::Deposits(3000, 300);
  ASSERT_THAT(ledger::Produce(cluster_->bootstrap_servers(), "deposits", deposits), IsOk());
  {
    MemberOptions m = Options("a");
    m.snapshot_min_bytes = 8 << 10;
    m.max_batch = 50;
    Member a(m);
    ASSERT_TRUE(WaitFor([&] { return AllCommitted(); }, absl::Seconds(60)));
    // The last pointer is committed once the snapshot's end is acknowledged: a commit after it.
    ASSERT_GT(a.Stats().snapshots, 0u);
    ASSERT_THAT(a.Stop(), IsOk());
  }
  ScratchDir verify;
  IDEM_ASSERT_OK_AND_ASSIGN(auto set, PartitionSet::Open(PartitionSetOptions(), verify.Sub("set")));
  KafkaRestoreOptions r = ledger::RestoreOptions(cluster_->bootstrap_servers());
  std::vector<ledger::State> states;
  for (int p = 0; p < kPartitions; ++p) {
    IDEM_ASSERT_OK_AND_ASSIGN(KafkaRestoreResult restored, RestoreFromChangelog(r, set.get(), p));
    EXPECT_THAT(restored.how, ::testing::StartsWith("snapshot")) << p;
    IDEM_ASSERT_OK_AND_ASSIGN(ledger::State state, ledger::ReadCopy(set.get(), "deposits", p));
    states.push_back(state);
  }
  const ledger::Verdict v = ledger::Verify(deposits, states);
  EXPECT_TRUE(v.ok()) << v.ToString();
}

// A member whose partitions come back to it (it kept clean copies) catches up with what the other
// owner wrote meanwhile, reading only the log's tail, instead of restoring.
TEST_F(KafkaTest, ACleanLocalCopyCatchesUpWithTheTail) {
  const std::vector<ledger::Deposit> first = ledger::Deposits(1000, 30, 0), second = ledger::Deposits(1000, 30, 1000),
                                     third = ledger::Deposits(1000, 30, 2000);
  ASSERT_THAT(ledger::Produce(cluster_->bootstrap_servers(), "deposits", first), IsOk());
  {
    Member a(Options("a"));
    ASSERT_TRUE(WaitFor([&] { return AllCommitted(); }, absl::Seconds(60)));
  }
  ASSERT_THAT(ledger::Produce(cluster_->bootstrap_servers(), "deposits", second), IsOk());
  {
    Member b(Options("b"));
    ASSERT_TRUE(WaitFor([&] { return AllCommitted(); }, absl::Seconds(60)));
    EXPECT_EQ(b.Stats().restores, static_cast<uint64_t>(kPartitions));
  }
  ASSERT_THAT(ledger::Produce(cluster_->bootstrap_servers(), "deposits", third), IsOk());
  {
    Member a(Options("a"));  // its disk again
    ASSERT_TRUE(WaitFor([&] { return AllCommitted(); }, absl::Seconds(60)));
    const KafkaConsumerStats s = a.Stats();
    EXPECT_EQ(s.catch_ups, static_cast<uint64_t>(kPartitions));
    EXPECT_EQ(s.restores, 0u);
    EXPECT_EQ(s.applied, third.size());
  }
  std::vector<ledger::Deposit> all = first;
  all.insert(all.end(), second.begin(), second.end());
  all.insert(all.end(), third.begin(), third.end());
  const ledger::Verdict v = ledger::Verify(all, RestoreAll(cluster_.get(), dir_.Sub("verify"), kPartitions));
  EXPECT_TRUE(v.ok()) << v.ToString();
}

// The changelog lost its start to retention (the mock keeps about 5 MiB per partition) and no snapshot
// points past the loss: the partition is kDataLoss, stays paused, and is never restored empty.
TEST_F(KafkaTest, ATruncatedChangelogIsDataLossAndThePartitionStaysPaused) {
  ASSERT_THAT(cluster_->CreateTopic("fat", 1), IsOk());
  ASSERT_THAT(cluster_->CreateTopic("fat-changelog", 1), IsOk());
  auto fat = [](KafkaConsumerOptions& o) {
    // 16 KiB of incompressible state per event: 500 events are about 8 MiB of changelog.
    o.handler = [](const KafkaMessage& m, const EventContext& ctx,
                   KafkaPartitionView& view) -> absl::StatusOr<std::string> {
      std::string blob(16 << 10, '\0');
      uint64_t x = Fingerprint(ctx.event_id);
      for (char& c : blob) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        c = static_cast<char>(x >> 56);
      }
      ctx.effects->Put(view.family(1), std::string(m.key) + std::string(ctx.event_id), blob);
      ctx.effects->Put(view.family(2), std::string(ctx.event_id), "1");
      return std::string("ok");
    };
    o.snapshot_min_bytes = size_t{1} << 40;  // never: nothing points past the loss
  };
  const std::vector<ledger::Deposit> deposits = ledger::Deposits(500, 5);
  ASSERT_THAT(ledger::Produce(cluster_->bootstrap_servers(), "fat", deposits), IsOk());
  {
    MemberOptions m = Options("a");
    m.input = "fat";
    m.changelog = "fat-changelog";
    m.adjust = fat;
    Member a(m);
    ASSERT_TRUE(
        WaitFor([&] { return testing::kafka::AllCommitted(cluster_.get(), "ledger", "fat", 1); }, absl::Seconds(60)));
  }
  IDEM_ASSERT_OK_AND_ASSIGN(auto marks, cluster_->Watermarks("fat-changelog", 0));
  ASSERT_GT(marks.first, 0) << "the mock kept the whole changelog: the test did not truncate it";

  MemberOptions m = Options("b");
  m.input = "fat";
  m.changelog = "fat-changelog";
  m.adjust = fat;
  Member b(m);
  ASSERT_TRUE(WaitFor([&] { return b.Stats().data_loss_partitions == 1; }, absl::Seconds(60)));
  EXPECT_TRUE(b.Active().empty());
  EXPECT_EQ(b.Stats().applied, 0u);

  ScratchDir verify;
  IDEM_ASSERT_OK_AND_ASSIGN(auto set, PartitionSet::Open(PartitionSetOptions(), verify.Sub("set")));
  KafkaRestoreOptions r = ledger::RestoreOptions(cluster_->bootstrap_servers(), "ledger", "fat", "fat-changelog");
  EXPECT_THAT(RestoreFromChangelog(r, set.get(), 0), StatusIs(absl::StatusCode::kDataLoss));
}

// Messages with no event ID, and payloads the handler rejects, go to the dead-letter topic with the
// reason, and their offsets are committed: the partition does not stop on them.
TEST_F(KafkaTest, PoisonMessagesAreDeadLetteredAndThePartitionGoesOn) {
  ASSERT_THAT(cluster_->CreateTopic("dead", 1), IsOk());
  const std::vector<ledger::Deposit> deposits = ledger::Deposits(300, 10);
  ASSERT_THAT(ledger::Produce(cluster_->bootstrap_servers(), "deposits", deposits), IsOk());
  // Poison: one with neither key nor idem-id, one whose amount does not parse.
  std::vector<ledger::Deposit> bad = {{"", "", 1}};
  ASSERT_THAT(ledger::Produce(cluster_->bootstrap_servers(), "deposits", bad), IsOk());
  {
    char error[256];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", cluster_->bootstrap_servers().c_str(), error, sizeof error);
    rd_kafka_t* p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof error);
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(rd_kafka_producev(p, RD_KAFKA_V_TOPIC("deposits"), RD_KAFKA_V_KEY("acct-1", 6),
                                RD_KAFKA_V_VALUE(const_cast<char*>("not-a-number"), 12),
                                RD_KAFKA_V_HEADER("idem-id", "evt-bad", 7), RD_KAFKA_V_END),
              RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_flush(p, 10000);
    rd_kafka_destroy(p);
  }
  MemberOptions m = Options("a");
  m.adjust = [](KafkaConsumerOptions& o) { o.dead_letter_topic = "dead"; };
  Member a(m);
  ASSERT_TRUE(WaitFor([&] { return AllCommitted(); }, absl::Seconds(60)));
  EXPECT_EQ(a.Stats().dead_letters, 2u);
  EXPECT_EQ(a.Stats().applied, deposits.size());
  IDEM_ASSERT_OK_AND_ASSIGN(auto marks, cluster_->Watermarks("dead", 0));
  EXPECT_EQ(marks.second, 2);
}

// The store fails (every write an I/O error for a while) with deposits flowing: the partitions pause,
// and once the store has recovered each is rebuilt from its changelog (the failed write's outcome is
// unknown) and resumed. Nothing is missing and nothing is applied twice.
TEST_F(KafkaTest, AStoreFailurePausesThePartitionsWhichAreRebuiltWhenItRecovers) {
  auto fs = std::make_shared<testing::FaultFs>();
  std::unique_ptr<rocksdb::Env> env = testing::EnvOver(fs);
  const std::vector<ledger::Deposit> deposits = ledger::Deposits(4000, 40);
  std::atomic<bool> produced{false};
  std::thread producer = ledger::Stream(cluster_->bootstrap_servers(), "deposits", deposits, 200, 100, 5, &produced);
  MemberOptions m = Options("a");
  m.adjust_set = [&](PartitionSetOptions& so) {
    so.store.env = env.get();
    so.maintenance_interval = absl::ZeroDuration();
  };
  Member a(m);
  ASSERT_TRUE(WaitFor([&] { return a.Stats().applied > 800; }, absl::Seconds(60)));
  fs->Arm(testing::Fault::kIoError);
  ASSERT_TRUE(WaitFor([&] { return a.Stats().store_pauses > 0; }, absl::Seconds(30)));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  fs->Clear();
  producer.join();
  ASSERT_TRUE(produced);
  ASSERT_TRUE(WaitFor([&] { return AllCommitted(); }, absl::Seconds(90)));
  EXPECT_GT(a.Stats().restarts, 0u);
  EXPECT_EQ(a.Active().size(), static_cast<size_t>(kPartitions));
  ASSERT_THAT(a.Stop(), IsOk());
  const ledger::Verdict v = ledger::Verify(deposits, RestoreAll(cluster_.get(), dir_.Sub("verify"), kPartitions));
  EXPECT_TRUE(v.ok()) << v.ToString();
}

// Many partitions per process: 64 input partitions, one member, each restored, claimed and consumed; a
// second member on an empty disk restores all 64.
TEST_F(KafkaTest, SixtyFourPartitionsInOneProcess) {
  constexpr int kMany = 64;
  ASSERT_THAT(cluster_->CreateTopic("wide", kMany), IsOk());
  ASSERT_THAT(cluster_->CreateTopic("wide-changelog", kMany), IsOk());
  const std::vector<ledger::Deposit> deposits = ledger::Deposits(6400, 640);
  ASSERT_THAT(ledger::Produce(cluster_->bootstrap_servers(), "wide", deposits), IsOk());
  auto options = [&](const std::string& name) {
    MemberOptions m = Options(name);
    m.input = "wide";
    m.changelog = "wide-changelog";
    return m;
  };
  {
    const int threads_before = testing::ThreadCount();
    Member a(options("a"));
    ASSERT_TRUE(WaitFor([&] { return testing::kafka::AllCommitted(cluster_.get(), "ledger", "wide", kMany); },
                        absl::Seconds(120)));
    EXPECT_EQ(a.Active().size(), static_cast<size_t>(kMany));
    const KafkaConsumerStats stats = a.Stats();
    EXPECT_EQ(stats.applied, deposits.size());
    // Everything consumed and committed: no partition lags (each was fetched, so each is known).
    EXPECT_EQ(stats.input_lag.size(), static_cast<size_t>(kMany));
    for (const auto& [partition, lag] : stats.input_lag) EXPECT_EQ(lag, 0) << "partition " << partition;
    // The member's clients and the set's threads, not threads per partition (a Processor each used to
    // start two: +128 here).
    const int added = testing::ThreadCount() - threads_before;
    EXPECT_LT(added, kMany) << added << " threads for " << kMany << " partitions";
    std::printf("threads added by a member owning %d partitions: %d\n", kMany, added);
  }
  ASSERT_THAT(ledger::Produce(cluster_->bootstrap_servers(), "wide", deposits), IsOk());
  {
    Member b(options("b"));
    ASSERT_TRUE(WaitFor([&] { return testing::kafka::AllCommitted(cluster_.get(), "ledger", "wide", kMany); },
                        absl::Seconds(120)));
    EXPECT_EQ(b.Stats().restores, static_cast<uint64_t>(kMany));
    EXPECT_EQ(b.Stats().applied, 0u);
    EXPECT_EQ(b.Stats().duplicates, deposits.size());
  }
  const ledger::Verdict v = ledger::Verify(
      deposits, RestoreAll(cluster_.get(), dir_.Sub("verify"), kMany, "ledger", "wide", "wide-changelog"));
  EXPECT_TRUE(v.ok()) << v.ToString();
}

}  // namespace
}  // namespace idem
