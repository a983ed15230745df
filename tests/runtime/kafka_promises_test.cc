// The Kafka member's exactly-once promises where the log or a handler's output would break them, on
// librdkafka 2.0.2's mock cluster: a changelog that comes back empty (recreated or renamed) is data
// loss, never an empty restore; an event the commit refuses is never seen by the later events of its
// batch. (The changelog's own order under a claim is checked by changelog_test and the model check.)
#include <atomic>
#include <string>
#include <tuple>
#include <vector>

#include <librdkafka/rdkafka.h>

#include "gtest/gtest.h"
#include "idem/kafka.h"
#include "idem/kafka_mock.h"
#include "testing/kafka_ledger.h"
#include "tests/support/kafka_util.h"
#include "tests/support/test_util.h"

namespace idem {
namespace {

using ::idem::testing::IsOk;
using ::idem::testing::ScratchDir;
using ::idem::testing::WaitFor;
using ::idem::testing::kafka::Member;
using ::idem::testing::kafka::MemberOptions;

class KafkaPromisesTest : public ::testing::Test {
 protected:
  void SetUp() override { IDEM_ASSERT_OK_AND_ASSIGN(cluster_, KafkaMockCluster::Create(1)); }

  MemberOptions Options(const std::string& name, const std::string& input, const std::string& changelog) {
    MemberOptions m;
    m.bootstrap = cluster_->bootstrap_servers();
    m.state_dir = dir_.Sub(name);
    m.name = name;
    m.input = input;
    m.changelog = changelog;
    return m;
  }
  bool AllCommitted(const std::string& input, int partitions) {
    return testing::kafka::AllCommitted(cluster_.get(), "ledger", input, partitions);
  }

  ScratchDir dir_;
  std::unique_ptr<KafkaMockCluster> cluster_;
};

// The changelog topic is recreated (here: the member is pointed at a new, empty one) while the group's
// offsets are kept. Neither a new owner nor the old owner with its clean local copy may restore an empty
// partition: the deposits sent again would all apply a second time. Both refuse, and stay paused.
TEST_F(KafkaPromisesTest, AChangelogThatComesBackEmptyIsDataLossNotAnEmptyRestore) {
  constexpr int kPartitions = 2;
  ASSERT_THAT(cluster_->CreateTopic("in", kPartitions), IsOk());
  ASSERT_THAT(cluster_->CreateTopic("log-1", kPartitions), IsOk());
  ASSERT_THAT(cluster_->CreateTopic("log-2", kPartitions), IsOk());
  const std::vector<ledger::Deposit> deposits = ledger::Deposits(100, 10);
  ASSERT_THAT(ledger::Produce(cluster_->bootstrap_servers(), "in", deposits), IsOk());
  {
    Member a(Options("a", "in", "log-1"));
    ASSERT_TRUE(WaitFor([&] { return AllCommitted("in", kPartitions); }, absl::Seconds(60)));
    ASSERT_EQ(a.Stats().applied, deposits.size());
    ASSERT_THAT(a.Stop(), IsOk());  // leaves clean local copies
  }
  ASSERT_THAT(ledger::Produce(cluster_->bootstrap_servers(), "in", deposits), IsOk());  // sent again
  {
    Member b(Options("b", "in", "log-2"));  // a new owner, empty disk
    ASSERT_TRUE(WaitFor([&] { return b.Stats().data_loss_partitions == kPartitions; }, absl::Seconds(60)))
        << "data loss partitions: " << b.Stats().data_loss_partitions << ", applied " << b.Stats().applied;
    EXPECT_TRUE(b.Active().empty());
    EXPECT_EQ(b.Stats().applied, 0u);
    ASSERT_THAT(b.Stop(), IsOk());
  }
  {
    Member a(Options("a", "in", "log-2"));  // the old owner, its clean copies noted in log-1
    ASSERT_TRUE(WaitFor([&] { return a.Stats().data_loss_partitions == kPartitions; }, absl::Seconds(60)))
        << "data loss partitions: " << a.Stats().data_loss_partitions << ", applied " << a.Stats().applied;
    EXPECT_TRUE(a.Active().empty());
    EXPECT_EQ(a.Stats().applied, 0u);
    ASSERT_THAT(a.Stop(), IsOk());
  }
  // Its copies were not touched: with the right changelog, they come back whole.
  Member again(Options("a", "in", "log-1"));
  ASSERT_TRUE(WaitFor([&] { return AllCommitted("in", kPartitions); }, absl::Seconds(60)));
  EXPECT_EQ(again.Stats().applied, 0u);
  EXPECT_EQ(again.Stats().duplicates, deposits.size());
  EXPECT_EQ(again.Stats().data_loss_partitions, 0u);
}

// Events of one batch read each other's effects through KafkaPartitionView. One whose commit is
// refused — its result over max_result_bytes, or an effect outside the partition's families — is
// dead-lettered, and the balance the later events computed must not hold its deposit.
TEST_F(KafkaPromisesTest, AnEventRefusedAtCommitWasNeverSeenByTheLaterEventsOfItsBatch) {
  ASSERT_THAT(cluster_->CreateTopic("refuse", 1), IsOk());
  ASSERT_THAT(cluster_->CreateTopic("refuse-log", 1), IsOk());
  std::vector<ledger::Deposit> deposits = ledger::Deposits(10, 1);  // one account: each reads the last
  ASSERT_THAT(ledger::Produce(cluster_->bootstrap_servers(), "refuse", deposits), IsOk());
  const std::string too_large = deposits[3].id, outside = deposits[6].id;
  MemberOptions m = Options("a", "refuse", "refuse-log");
  m.max_batch = 100;
  m.adjust = [=](KafkaConsumerOptions& o) {
    KafkaHandler ledger = ledger::Handler();
    o.handler = [=](const KafkaMessage& msg, const EventContext& ctx,
                    KafkaPartitionView& view) -> absl::StatusOr<std::string> {
      absl::StatusOr<std::string> r = ledger(msg, ctx, view);
      if (!r.ok()) return r;
      if (ctx.event_id == too_large) return std::string(idem::Options().max_result_bytes + 1, 'r');
      if (ctx.event_id == outside) ctx.effects->Put(view.family(0), "not-yours", "x");  // idem's records
      return r;
    };
  };
  Member a(m);
  ASSERT_TRUE(WaitFor([&] { return AllCommitted("refuse", 1); }, absl::Seconds(60)));
  EXPECT_EQ(a.Stats().dead_letters, 2u);
  EXPECT_EQ(a.Stats().applied, deposits.size() - 2);
  ASSERT_THAT(a.Stop(), IsOk());

  int64_t expected = 0;
  for (const ledger::Deposit& d : deposits) {
    if (d.id != too_large && d.id != outside) expected += d.amount;
  }
  std::vector<ledger::State> states =
      ledger::RestoreAll(cluster_.get(), dir_.Sub("verify"), 1, "ledger", "refuse", "refuse-log");
  ASSERT_EQ(states.size(), 1u);
  EXPECT_EQ(states[0].balances[deposits[0].account], expected);
  EXPECT_EQ(states[0].applied.count(too_large), 0u);
  EXPECT_EQ(states[0].applied.count(outside), 0u);
}

// The broker refuses a Produce of the changelog for good (INVALID_RECORD) in the middle of a stream of
// read-modify-write deposits, while the member's later records go on being accepted: a gap inside one
// claim. The partition must produce nothing more on top of the missing record, be rebuilt from its log
// under a new claim, and every deposit must end applied exactly once (a replay that counted the records
// after the gap, built on the missing one, then applied the redelivered events again).
TEST_F(KafkaPromisesTest, AChangelogRecordTheBrokerRefusesLeavesNoGapThatARestoreCounts) {
  ASSERT_THAT(cluster_->CreateTopic("gap", 1), IsOk());
  ASSERT_THAT(cluster_->CreateTopic("gap-log", 1), IsOk());
  const std::vector<ledger::Deposit> deposits = ledger::Deposits(600, 3);  // few accounts: each reads the last
  ASSERT_THAT(ledger::Produce(cluster_->bootstrap_servers(), "gap", deposits), IsOk());
  std::atomic<int> handled{0};
  KafkaMockCluster* cluster = cluster_.get();
  MemberOptions m = Options("a", "gap", "gap-log");
  m.max_batch = 20;
  m.adjust = [&handled, cluster](KafkaConsumerOptions& o) {
    o.producer_config.emplace_back("linger.ms", "0");  // a request per record: the next ones go out at once
    KafkaHandler ledger = ledger::Handler();
    o.handler = [ledger, &handled, cluster](const KafkaMessage& msg, const EventContext& ctx,
                                            KafkaPartitionView& view) -> absl::StatusOr<std::string> {
      // Five times in the stream: the next Produce request (this batch's record) is refused for good.
      const int n = ++handled;
      if (n % 100 == 0 && n <= 500) cluster->FailNextRequests(0, 1, 87).IgnoreError();
      return ledger(msg, ctx, view);
    };
  };
  {
    Member a(m);
    ASSERT_TRUE(WaitFor([&] { return AllCommitted("gap", 1); }, absl::Seconds(120)));
    EXPECT_GE(a.Stats().changelog_failures, 1u);
    EXPECT_GE(a.Stats().restarts, 1u);
    ASSERT_THAT(a.Stop(), IsOk());
  }
  const ledger::Verdict v =
      ledger::Verify(deposits, ledger::RestoreAll(cluster_.get(), dir_.Sub("verify"), 1, "ledger", "gap", "gap-log"));
  EXPECT_TRUE(v.ok()) << v.ToString();
  // And from the log's first record, as an audit would.
  const ledger::Verdict audit = ledger::Verify(
      deposits, ledger::RestoreAll(cluster_.get(), dir_.Sub("audit"), 1, "ledger", "gap", "gap-log", nullptr, true));
  EXPECT_TRUE(audit.ok()) << audit.ToString();
}

// Reads every message of a one-partition topic: (key, idem-id header, idem-source header).
std::vector<std::tuple<std::string, std::string, std::string>> ReadAll(const std::string& bootstrap,
                                                                       const std::string& topic, int64_t end) {
  std::vector<std::tuple<std::string, std::string, std::string>> out;
  char error[256];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), error, sizeof error);
  rd_kafka_conf_set(conf, "group.id", "reader", error, sizeof error);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, error, sizeof error);
  if (rk == nullptr) return out;
  rd_kafka_poll_set_consumer(rk);
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, topic.c_str(), 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_assign(rk, list);
  rd_kafka_topic_partition_list_destroy(list);
  auto header = [](rd_kafka_message_t* m, const char* name) {
    rd_kafka_headers_t* h = nullptr;
    const void* v = nullptr;
    size_t n = 0;
    if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(h, name, &v, &n) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return std::string();
    }
    return std::string(static_cast<const char*>(v), n);
  };
  for (int i = 0; i < 200 && static_cast<int64_t>(out.size()) < end; ++i) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 100);
    if (m == nullptr) continue;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      out.emplace_back(std::string(static_cast<const char*>(m->key), m->key_len), header(m, "idem-id"),
                       header(m, "idem-source"));
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return out;
}

// Two rejected deposits of one account go to the dead-letter topic each with its own idem-id (replayed
// after a fix, they are two events again) and where it came from. One whose dead letter cannot be
// produced (larger than the producer's message.max.bytes) is counted and logged, not silently dropped.
TEST_F(KafkaPromisesTest, ADeadLetterCarriesTheMessageAsItCameAndOneNotWrittenIsCounted) {
  ASSERT_THAT(cluster_->CreateTopic("poison", 1), IsOk());
  ASSERT_THAT(cluster_->CreateTopic("poison-log", 1), IsOk());
  ASSERT_THAT(cluster_->CreateTopic("poison-dead", 1), IsOk());
  {
    char error[256];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", cluster_->bootstrap_servers().c_str(), error, sizeof error);
    rd_kafka_t* p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof error);
    ASSERT_NE(p, nullptr);
    const std::string big_key(200 << 10, 'k');
    for (const auto& [key, id] : std::vector<std::pair<std::string, std::string>>{
             {"acct-1", "evt-bad-1"}, {"acct-1", "evt-bad-2"}, {big_key, "evt-bad-big"}}) {
      ASSERT_EQ(rd_kafka_producev(p, RD_KAFKA_V_TOPIC("poison"), RD_KAFKA_V_KEY(key.data(), key.size()),
                                  RD_KAFKA_V_VALUE(const_cast<char*>("not-a-number"), 12),
                                  RD_KAFKA_V_HEADER("idem-id", id.data(), static_cast<ssize_t>(id.size())),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    rd_kafka_flush(p, 10000);
    rd_kafka_destroy(p);
  }
  MemberOptions m = Options("a", "poison", "poison-log");
  m.adjust = [](KafkaConsumerOptions& o) {
    o.dead_letter_topic = "poison-dead";
    o.producer_config.emplace_back("message.max.bytes", "100000");
  };
  Member a(m);
  ASSERT_TRUE(WaitFor([&] { return AllCommitted("poison", 1); }, absl::Seconds(60)));
  ASSERT_TRUE(WaitFor([&] { return a.Stats().dead_letter_failures == 1; }, absl::Seconds(30)))
      << a.Stats().dead_letter_failures;
  EXPECT_EQ(a.Stats().dead_letters, 3u);
  IDEM_ASSERT_OK_AND_ASSIGN(auto marks, cluster_->Watermarks("poison-dead", 0));
  ASSERT_EQ(marks.second, 2);
  const auto dead = ReadAll(cluster_->bootstrap_servers(), "poison-dead", 2);
  ASSERT_EQ(dead.size(), 2u);
  EXPECT_EQ(dead[0], std::make_tuple(std::string("acct-1"), std::string("evt-bad-1"), std::string("poison/0@0")));
  EXPECT_EQ(dead[1], std::make_tuple(std::string("acct-1"), std::string("evt-bad-2"), std::string("poison/0@1")));
}

}  // namespace
}  // namespace idem
