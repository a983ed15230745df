// The kafka tests' in-process member (a PartitionSet and a KafkaConsumer polled by a thread); the
// checks ("every input partition committed to its end", the verifier's restore) are the demo's, in
// testing/kafka_ledger.h.
#ifndef IDEM_TESTS_SUPPORT_KAFKA_UTIL_H_
#define IDEM_TESTS_SUPPORT_KAFKA_UTIL_H_

#include <librdkafka/rdkafka.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "idem/kafka.h"
#include "idem/kafka_mock.h"
#include "idem/partition_set.h"
#include "testing/kafka_ledger.h"

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
  std::function<void(PartitionSetOptions&)> adjust_set;
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
    if (m.adjust_set) m.adjust_set(so);
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

using ledger::AllCommitted;
using ledger::Committed;
using ledger::RestoreAll;

}  // namespace idem::testing::kafka

#endif  // IDEM_TESTS_SUPPORT_KAFKA_UTIL_H_
