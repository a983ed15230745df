// The Kafka adapter on librdkafka 2.0.2's mock cluster (docs/SCALING.md, "Measured: the Kafka adapter"):
//
//   BM_ConsumeFloor       a plain librdkafka consumer in a group reading the same input, doing nothing:
//                         the floor the adapter is held against, in the same run
//   BM_Consume/0          KafkaConsumer with the ledger handler, no changelog
//   BM_Consume/1          the same with the changelog (each commit's record produced and acknowledged
//                         before its offset is committed)
//   BM_Restore            a member on an empty disk restores 16 partitions of 62 500 IDs (1 M) from their
//                         snapshots and tails, claims them and resumes
//   BM_GracefulTakeover   one of two members leaves (Close): time until the other consumes all partitions
//
// Each is a scenario run once per repetition (Iterations(1), manual time): the mock's group protocol
// takes seconds (a first join 3 s, a rebalance session.timeout.ms - 1000 ms), so the timed part starts
// at the first message handled (consume) or at the assignment (restore, takeover). Wall times on this
// 2-core machine move up to 2x between runs: compare the ratios within one run.
// Usage: idem_kafka_bench [--events=N] [--restore-ids=N] [benchmark flags]
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "benchmark/benchmark.h"
#include "idem/kafka.h"
#include "idem/kafka_mock.h"
#include "idem/partition_set.h"
#include "testing/kafka_ledger.h"

namespace idem::bench {
namespace {

using Steady = std::chrono::steady_clock;
int g_events = 100000;
int g_restore_ids = 1000000;
constexpr int kPartitions = 16;

std::string Scratch(const std::string& name) {
  const char* base = std::getenv("TMPDIR");
  static const std::string root = std::string(base ? base : "/tmp") + "/idem-kafka-bench-" + std::to_string(::getpid());
  std::filesystem::remove_all(root + "/" + name);
  std::filesystem::create_directories(root);
  return root + "/" + name;
}

double Seconds(Steady::time_point from) { return std::chrono::duration<double>(Steady::now() - from).count(); }

KafkaConsumerOptions Options(const std::string& bootstrap, const std::string& group, const std::string& changelog) {
  KafkaConsumerOptions o;
  o.bootstrap_servers = bootstrap;
  o.group_id = group;
  o.input_topic = "deposits";
  o.changelog_topic = changelog;
  o.effect_families = {"balances"};
  // A balance per account, no per-event state: the partition's state is its IDs, as a dedup store's is.
  o.handler = [](const KafkaMessage& m, const EventContext& ctx,
                 KafkaPartitionView& view) -> absl::StatusOr<std::string> {
    absl::StatusOr<std::optional<std::string>> b = view.Get(1, m.key);
    if (!b.ok()) return b.status();
    int64_t balance = 0, amount = 0;
    if (*b) (void)absl::SimpleAtoi(**b, &balance);
    (void)absl::SimpleAtoi(absl::string_view(m.value.data(), m.value.size()), &amount);
    ctx.effects->Put(view.family(1), std::string(m.key), std::to_string(balance + amount));
    return std::string();
  };
  o.consumer_config = {
      {"session.timeout.ms", "4000"}, {"heartbeat.interval.ms", "400"}, {"max.poll.interval.ms", "30000"}};
  o.max_batch = 500;
  if (std::getenv("IDEM_BENCH_LOG") == nullptr) o.log = [](std::string_view) {};
  return o;
}

PartitionSetOptions SetOptions() {
  PartitionSetOptions so;
  so.block_cache_bytes = 64 << 20;
  so.write_buffer_budget_bytes = 128 << 20;
  return so;
}

struct Cluster {
  std::unique_ptr<KafkaMockCluster> mock;
  std::vector<ledger::Deposit> deposits;
};

Cluster MakeCluster(int events, int accounts) {
  Cluster c;
  c.mock = *KafkaMockCluster::Create(1);
  (void)c.mock->CreateTopic("deposits", kPartitions);
  (void)c.mock->CreateTopic("deposits-changelog", kPartitions);
  c.deposits = ledger::Deposits(events, accounts);
  (void)ledger::Produce(c.mock->bootstrap_servers(), "deposits", c.deposits);
  return c;
}

// Polls `consumer` until it handled `n` messages. Returns the messages handled and the seconds taken
// after every partition was restored, claimed and resumed (before, the restores hold consumption back).
std::pair<uint64_t, double> ConsumeAll(KafkaConsumer* consumer, uint64_t n) {
  Steady::time_point from;
  uint64_t before = 0;
  bool started = false;
  const auto give_up = Steady::now() + std::chrono::minutes(5);
  while (consumer->GetStats().messages < n && Steady::now() < give_up) {
    (void)consumer->Poll();
    if (!started && consumer->ActivePartitions().size() == static_cast<size_t>(kPartitions)) {
      started = true;
      from = Steady::now();
      before = consumer->GetStats().messages;
    }
  }
  if (!started) return {0, 0};
  return {consumer->GetStats().messages - before, Seconds(from)};
}

void BM_ConsumeFloor(benchmark::State& state) {
  Cluster c = MakeCluster(g_events, 1000);
  for (auto _ : state) {
    char error[256];
    // Timed like BM_Consume: from the first message (a plain consumer has nothing to restore).
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    for (const auto& [k, v] :
         std::vector<std::pair<const char*, std::string>>{{"bootstrap.servers", c.mock->bootstrap_servers()},
                                                          {"group.id", "floor"},
                                                          {"auto.offset.reset", "earliest"},
                                                          {"enable.auto.commit", "true"},
                                                          {"session.timeout.ms", "4000"},
                                                          {"heartbeat.interval.ms", "400"}}) {
      rd_kafka_conf_set(conf, k, v.c_str(), error, sizeof error);
    }
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, error, sizeof error);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, "deposits", RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    int n = 0;
    Steady::time_point first;
    while (n < g_events) {
      rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 100);
      if (m == nullptr) continue;
      if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && n++ == 0) first = Steady::now();
      rd_kafka_message_destroy(m);
    }
    state.SetIterationTime(Seconds(first));
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
  }
  state.counters["events_per_s"] = benchmark::Counter(g_events, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ConsumeFloor)->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

void BM_Consume(benchmark::State& state) {
  const bool changelog = state.range(0) != 0;
  Cluster c = MakeCluster(g_events, 1000);
  for (auto _ : state) {
    auto set = PartitionSet::Open(SetOptions(), Scratch(changelog ? "consume-1" : "consume-0"));
    auto consumer = KafkaConsumer::Create(
        Options(c.mock->bootstrap_servers(), "g", changelog ? "deposits-changelog" : ""), set->get());
    const auto [handled, seconds] = ConsumeAll(consumer->get(), g_events);
    state.SetIterationTime(seconds);
    const KafkaConsumerStats s = (*consumer)->GetStats();
    state.counters["events_per_s"] = benchmark::Counter(static_cast<double>(handled), benchmark::Counter::kIsRate);
    state.counters["timed_events"] = static_cast<double>(handled);
    state.counters["batch_p50_us"] = absl::ToDoubleMicroseconds(s.step_latency.p50);
    state.counters["batch_p99_us"] = absl::ToDoubleMicroseconds(s.step_latency.p99);
    state.counters["events_per_batch"] =
        s.step_latency.count > 0 ? static_cast<double>(s.messages) / s.step_latency.count : 0;
    state.counters["changelog_B_per_event"] = s.messages > 0 ? static_cast<double>(s.changelog_bytes) / s.messages : 0;
    (void)(*consumer)->Close();
    (void)(*set)->Close();
  }
}
BENCHMARK(BM_Consume)->Arg(0)->Arg(1)->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

void BM_Restore(benchmark::State& state) {
  Cluster c = MakeCluster(g_restore_ids, 1000);
  {
    // The source: one member consumes everything, snapshotting as its log grows, then leaves.
    auto set = PartitionSet::Open(SetOptions(), Scratch("restore-source"));
    KafkaConsumerOptions o = Options(c.mock->bootstrap_servers(), "r", "deposits-changelog");
    o.snapshot_min_bytes = 512 << 10;
    auto consumer = KafkaConsumer::Create(o, set->get());
    ConsumeAll(consumer->get(), g_restore_ids);
    (void)(*consumer)->Close();
    (void)(*set)->Close();
  }
  for (auto _ : state) {
    auto set = PartitionSet::Open(SetOptions(), Scratch("restore-target"));
    auto consumer = KafkaConsumer::Create(Options(c.mock->bootstrap_servers(), "r", "deposits-changelog"), set->get());
    const auto give_up = Steady::now() + std::chrono::minutes(5);
    while ((*consumer)->GetStats().active_partitions < kPartitions && Steady::now() < give_up) {
      (void)(*consumer)->Poll();
    }
    const KafkaConsumerStats s = (*consumer)->GetStats();
    // Assignment of the first partition to resumption of the last (restores run one after another).
    state.SetIterationTime(s.max_restore_seconds);
    state.counters["ids"] = g_restore_ids;
    state.counters["ids_per_s"] = g_restore_ids / std::max(1e-9, s.max_restore_seconds);
    state.counters["restores"] = static_cast<double>(s.restores);
    state.counters["data_loss"] = static_cast<double>(s.data_loss_partitions);
    (void)(*consumer)->Close();
    (void)(*set)->Close();
  }
}
BENCHMARK(BM_Restore)->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

void BM_GracefulTakeover(benchmark::State& state) {
  Cluster c = MakeCluster(20000, 200);
  static int round = 0;
  for (auto _ : state) {
    auto set_a = PartitionSet::Open(SetOptions(), Scratch("take-a-" + std::to_string(round)));
    auto set_b = PartitionSet::Open(SetOptions(), Scratch("take-b-" + std::to_string(round)));
    const std::string group = "t" + std::to_string(round++);
    auto a = KafkaConsumer::Create(Options(c.mock->bootstrap_servers(), group, "deposits-changelog"), set_a->get());
    auto b = KafkaConsumer::Create(Options(c.mock->bootstrap_servers(), group, "deposits-changelog"), set_b->get());
    std::atomic<bool> stop{false};
    std::thread tb([&] {
      while (!stop) (void)(*b)->Poll();
    });
    const auto give_up = Steady::now() + std::chrono::minutes(2);
    while (((*a)->ActivePartitions().empty() || (*b)->ActivePartitions().empty()) && Steady::now() < give_up) {
      (void)(*a)->Poll();
    }
    const auto left = Steady::now();
    (void)(*a)->Close();
    while ((*b)->ActivePartitions().size() < static_cast<size_t>(kPartitions) && Steady::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    state.SetIterationTime(Seconds(left));
    stop = true;
    tb.join();
    (void)(*b)->Close();
    (void)(*set_a)->Close();
    (void)(*set_b)->Close();
  }
}
BENCHMARK(BM_GracefulTakeover)->Iterations(1)->Repetitions(5)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace idem::bench

int main(int argc, char** argv) {
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--events=", 9) == 0) {
      idem::bench::g_events = std::atoi(argv[i] + 9);
    } else if (std::strncmp(argv[i], "--restore-ids=", 14) == 0) {
      idem::bench::g_restore_ids = std::atoi(argv[i] + 14);
    } else {
      rest.push_back(argv[i]);
    }
  }
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
