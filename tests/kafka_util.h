// The kafka tests' members and checks: an in-process member (a PartitionSet and a KafkaConsumer polled
// by a thread), "every input partition committed to its end", and the verifier's restore of every
// partition from the changelog into a fresh set.
#ifndef IDEM_TESTS_KAFKA_UTIL_H_
#define IDEM_TESTS_KAFKA_UTIL_H_

#include <librdkafka/rdkafka.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "examples/kafka/ledger.h"
#include "idem/kafka.h"
#include "idem/kafka_mock.h"
#include "idem/partition_set.h"

namespace idem::testing::kafka {

struct MemberOptions {
  std::string bootstrap;
  std::string state_dir;
  std::string name;
  std::string group = "ledger";
  std::string input = "deposits";
  std::string changelog = "deposits-changelog";
  size_t snapshot_min_bytes = 1 << 20;
  size_t max_batch = 200;
  int session_timeout_ms = 4000;
  std::vector<std::pair<std::string, std::string>> consumer_config;
  std::function<void(KafkaConsumerOptions&)> adjust;
};

inline KafkaConsumerOptions ConsumerOptions(const MemberOptions& m) {
  KafkaConsumerOptions o;
  o.bootstrap_servers = m.bootstrap;
  o.group_id = m.group;
  o.input_topic = m.input;
  o.changelog_topic = m.changelog;
  o.effect_families = ledger::Families();
  o.handler = ledger::Handler();
  o.snapshot_min_bytes = m.snapshot_min_bytes;
  o.max_batch = m.max_batch;
  o.consumer_config = {{"session.timeout.ms", std::to_string(m.session_timeout_ms)},
                       {"heartbeat.interval.ms", std::to_string(m.session_timeout_ms / 10)},
                       {"max.poll.interval.ms", std::to_string(m.session_timeout_ms + 1000)}};
  o.consumer_config.insert(o.consumer_config.end(), m.consumer_config.begin(), m.consumer_config.end());
  const std::string name = m.name;
  o.log = [name](std::string_view line) {
    std::fprintf(stderr, "[%s] %.*s\n", name.c_str(), static_cast<int>(line.size()), line.data());
  };
  if (m.adjust) m.adjust(o);
  return o;
}

// A member in this process: its set, its consumer, a thread polling it. Closed (leaving the group,
// keeping clean copies) when destroyed.
class Member {
 public:
  explicit Member(const MemberOptions& m) {
    PartitionSetOptions so;
    so.block_cache_bytes = 16 << 20;
    so.write_buffer_budget_bytes = 64 << 20;
    auto set = PartitionSet::Open(so, m.state_dir);
    if (!set.ok()) {
      error_ = set.status();
      return;
    }
    set_ = *std::move(set);
    auto consumer = KafkaConsumer::Create(ConsumerOptions(m), set_.get());
    if (!consumer.ok()) {
      error_ = consumer.status();
      return;
    }
    consumer_ = *std::move(consumer);
    thread_ = std::thread([this] {
      while (!stop_) {
        absl::StatusOr<size_t> n = consumer_->Poll();
        if (!n.ok()) {
          std::lock_guard<std::mutex> lock(mu_);
          error_ = n.status();
          return;
        }
      }
      std::lock_guard<std::mutex> lock(mu_);
      error_ = consumer_->Close();
    });
  }
  ~Member() { Stop().IgnoreError(); }

  // Leaves the group (the consumer's Close, on its thread) and closes the set.
  absl::Status Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (set_ != nullptr) {
      consumer_.reset();
      set_->Close().IgnoreError();
    }
    std::lock_guard<std::mutex> lock(mu_);
    return error_;
  }
  absl::Status error() const {
    std::lock_guard<std::mutex> lock(mu_);
    return error_;
  }
  KafkaConsumerStats Stats() const { return consumer_ != nullptr ? consumer_->GetStats() : KafkaConsumerStats{}; }
  std::vector<int32_t> Active() const {
    return consumer_ != nullptr ? consumer_->ActivePartitions() : std::vector<int32_t>{};
  }
  PartitionSet* set() const { return set_.get(); }

 private:
  std::unique_ptr<PartitionSet> set_;
  std::unique_ptr<KafkaConsumer> consumer_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable std::mutex mu_;
  absl::Status error_;
};

// The group's committed offsets, by partition (RD_KAFKA_OFFSET_INVALID: none), read by a consumer of
// the group that never joins it.
inline std::vector<int64_t> Committed(const std::string& bootstrap, const std::string& group, const std::string& topic,
                                      int partitions) {
  std::vector<int64_t> out(partitions, RD_KAFKA_OFFSET_INVALID);
  char error[256];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), error, sizeof error);
  rd_kafka_conf_set(conf, "group.id", group.c_str(), error, sizeof error);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, error, sizeof error);
  if (rk == nullptr) return out;
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p) rd_kafka_topic_partition_list_add(list, topic.c_str(), p);
  if (rd_kafka_committed(rk, list, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    for (int i = 0; i < list->cnt; ++i) out[list->elems[i].partition] = list->elems[i].offset;
  }
  rd_kafka_topic_partition_list_destroy(list);
  rd_kafka_destroy(rk);
  return out;
}

inline bool AllCommitted(KafkaMockCluster* cluster, const std::string& group, const std::string& topic,
                         int partitions) {
  const std::vector<int64_t> committed = Committed(cluster->bootstrap_servers(), group, topic, partitions);
  for (int p = 0; p < partitions; ++p) {
    absl::StatusOr<std::pair<int64_t, int64_t>> w = cluster->Watermarks(topic, p);
    if (!w.ok() || committed[p] < w->second) return false;
  }
  return true;
}

// Every partition restored from the changelog (as a new owner would, without claiming) into a fresh set
// at `dir`, and read. A partition that does not restore is left out (and reported on stderr).
inline std::vector<ledger::State> RestoreAll(KafkaMockCluster* cluster, const std::string& dir, int partitions,
                                             const std::string& group = "ledger", const std::string& input = "deposits",
                                             const std::string& changelog = "deposits-changelog",
                                             uint64_t* batches_fenced = nullptr, bool from_log_start = false) {
  std::vector<ledger::State> out;
  auto set = PartitionSet::Open(PartitionSetOptions(), dir);
  if (!set.ok()) return out;
  KafkaRestoreOptions r;
  r.bootstrap_servers = cluster->bootstrap_servers();
  r.group_id = group;
  r.input_topic = input;
  r.changelog_topic = changelog;
  r.effect_families = ledger::Families();
  r.from_log_start = from_log_start;
  for (int p = 0; p < partitions; ++p) {
    absl::StatusOr<KafkaRestoreResult> restored = RestoreFromChangelog(r, set->get(), p);
    if (!restored.ok()) {
      std::fprintf(stderr, "verifier: partition %d: %s\n", p, restored.status().ToString().c_str());
      continue;
    }
    if (batches_fenced != nullptr) *batches_fenced += restored->batches_fenced;
    absl::StatusOr<ledger::State> state = ledger::ReadCopy(set->get(), input, p);
    if (state.ok()) out.push_back(*std::move(state));
  }
  (*set)->Close().IgnoreError();
  return out;
}

}  // namespace idem::testing::kafka

#endif  // IDEM_TESTS_KAFKA_UTIL_H_
