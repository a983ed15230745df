// KafkaConsumer (idem/kafka.h), the facade of the Kafka member: the clients, the poll loop and the
// rebalance callbacks. Its jobs are cut by file, as Kafka Streams cuts its own: the partition owner
// (owned_partitions: assign, restore, activate, pause, restart, revoke), the batch step
// (partition_batch: a run of messages → one exactly-once step), the offset committer
// (offset_committer), the restore thread (partition_restorer) and the changelog producer
// (changelog_producer), sharing one small record per owned partition (owned_partition.h). The
// protocol they follow and why it is safe: idem/partition_owner.h, docs/SCALING.md.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "idem/kafka.h"
#include "idem/latency_histogram.h"
#include "runtime/kafka/changelog_producer.h"
#include "runtime/kafka/kafka_client.h"
#include "runtime/kafka/member_counters.h"
#include "runtime/kafka/offset_committer.h"
#include "runtime/kafka/owned_partitions.h"
#include "runtime/kafka/partition_batch.h"
#include "runtime/kafka/partition_restorer.h"

namespace idem {

using kafka::ChangelogProducer;
using kafka::Counter;
using kafka::Message;
using kafka::OwnedPartition;
using kafka::PartitionList;
using Steady = std::chrono::steady_clock;

class KafkaConsumer::Impl {
 public:
  Impl(KafkaConsumerOptions options, PartitionSet* set)
      : options_(std::move(options)),
        set_(set),
        committer_(options_.input_topic, !options_.changelog_topic.empty(), &counters_,
                   [this](std::string_view line) { options_.log(line); }) {
    if (!options_.log) {
      const std::string who = options_.group_id;
      options_.log = [who](std::string_view line) {
        std::fprintf(stderr, "idem kafka [%s]: %.*s\n", who.c_str(), static_cast<int>(line.size()), line.data());
      };
    }
  }
  ~Impl() { Close().IgnoreError(); }

  absl::Status Start() {
    kafka::Settings settings = {
        {"bootstrap.servers", options_.bootstrap_servers},
        {"group.id", options_.group_id},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"auto.offset.reset", "earliest"},
        {"partition.assignment.strategy", "cooperative-sticky"},
        {"reconnect.backoff.max.ms", "1000"},
        {"statistics.interval.ms", "100"},
    };
    settings.insert(settings.end(), options_.consumer_config.begin(), options_.consumer_config.end());
    for (const auto& [k, v] : settings) {
      if (k == "auto.offset.reset") reset_earliest_ = v == "earliest" || v == "smallest" || v == "beginning";
    }
    absl::StatusOr<kafka::Conf> conf = kafka::MakeConf(settings);
    if (!conf.ok()) return conf.status();
    rd_kafka_conf_set_opaque(conf->get(), this);
    rd_kafka_conf_set_rebalance_cb(conf->get(), &Impl::OnRebalance);
    rd_kafka_conf_set_offset_commit_cb(conf->get(), &Impl::OnCommitted);
    rd_kafka_conf_set_error_cb(conf->get(), &Impl::OnError);
    // The group's join state, from librdkafka's statistics: 2.0.2 takes a commit refused during a
    // cooperative rebalance (ILLEGAL_GENERATION) for a lost assignment (its bug #4059, fixed in 2.10),
    // so periodic commits wait while the member is not in the steady state.
    rd_kafka_conf_set_stats_cb(conf->get(), &Impl::OnStatistics);
    absl::StatusOr<kafka::Client> consumer = kafka::MakeClient(RD_KAFKA_CONSUMER, *std::move(conf));
    if (!consumer.ok()) return consumer.status();
    consumer_ = *std::move(consumer);
    rd_kafka_poll_set_consumer(consumer_.get());

    absl::StatusOr<std::unique_ptr<ChangelogProducer>> producer =
        ChangelogProducer::Create(options_.bootstrap_servers, options_.producer_config, options_.log);
    if (!producer.ok()) return producer.status();
    producer_ = *std::move(producer);

    const int timeout = static_cast<int>(absl::ToInt64Milliseconds(options_.restore_timeout));
    absl::StatusOr<int> inputs = kafka::PartitionCount(producer_->client(), options_.input_topic, timeout);
    if (!inputs.ok()) return inputs.status();
    if (!options_.changelog_topic.empty()) {
      absl::StatusOr<int> changelogs = kafka::PartitionCount(producer_->client(), options_.changelog_topic, timeout);
      if (!changelogs.ok()) return changelogs.status();
      if (*changelogs != *inputs) {
        return absl::FailedPreconditionError(absl::StrCat("changelog topic ", options_.changelog_topic, " has ",
                                                          *changelogs, " partitions; input topic ",
                                                          options_.input_topic, " has ", *inputs));
      }
    }
    kafka::PartitionRestorer::Config rc;
    rc.bootstrap_servers = options_.bootstrap_servers;
    rc.input_topic = options_.input_topic;
    rc.changelog_topic = options_.changelog_topic;
    rc.timeout = options_.restore_timeout;
    for (const auto& [k, v] : options_.consumer_config) {
      if (k.rfind("security.", 0) == 0 || k.rfind("sasl.", 0) == 0 || k.rfind("ssl.", 0) == 0) {
        rc.reader_settings.emplace_back(k, v);
      }
    }
    absl::StatusOr<std::unique_ptr<kafka::PartitionRestorer>> restorer =
        kafka::PartitionRestorer::Create(rc, set_, consumer_.get(), producer_.get(), options_.log);
    if (!restorer.ok()) return restorer.status();
    restorer_ = *std::move(restorer);
    committer_.set_consumer(consumer_.get());
    batch_ = std::make_unique<kafka::PartitionBatch>(&options_, producer_.get(), &counters_, &step_latency_);
    owned_ = std::make_unique<kafka::OwnedPartitions>(&options_, set_, consumer_.get(), producer_.get(),
                                                      restorer_.get(), &committer_, &counters_, reset_earliest_);

    PartitionList topics(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(topics.get(), options_.input_topic.c_str(), RD_KAFKA_PARTITION_UA);
    if (rd_kafka_resp_err_t err = rd_kafka_subscribe(consumer_.get(), topics.get());
        err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return kafka::KafkaError(err, "subscribing");
    }
    return absl::OkStatus();
  }

  absl::StatusOr<size_t> Poll() {
    if (closed_) return absl::FailedPreconditionError("the Kafka consumer is closed");
    char fatal[256];
    if (rd_kafka_resp_err_t err = rd_kafka_fatal_error(consumer_.get(), fatal, sizeof fatal); err) {
      return absl::UnavailableError(absl::StrCat("fatal Kafka consumer error: ", fatal));
    }
    // An idempotent producer's fatal error (e.g. its sequence broken by the broker) ends every later
    // produce: the member cannot replicate, so it must not consume. Close and create it again.
    if (rd_kafka_resp_err_t err = rd_kafka_fatal_error(producer_->client(), fatal, sizeof fatal); err) {
      return absl::UnavailableError(absl::StrCat("fatal changelog producer error: ", fatal));
    }
    owned_->AdvanceRestores();
    owned_->CheckPartitions();

    std::vector<Message> batch;
    // While a partition waits for its restore (or a pause to end), poll briefly: resuming it is this
    // loop's job, and a long poll would hold it back.
    int timeout = static_cast<int>(absl::ToInt64Milliseconds(options_.poll_timeout));
    if (owned_->Waiting()) timeout = std::min(timeout, 5);
    Message m(rd_kafka_consumer_poll(consumer_.get(), timeout));
    while (m != nullptr) {
      if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        batch.push_back(std::move(m));
        if (batch.size() >= options_.max_batch) break;
      } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        options_.log(absl::StrCat("consumer: ", rd_kafka_message_errstr(m.get())));
      }
      m.reset(rd_kafka_consumer_poll(consumer_.get(), 0));
    }
    // By partition, each in offset order (the order they came in).
    std::map<int32_t, std::vector<rd_kafka_message_t*>> by_partition;
    for (const Message& message : batch) by_partition[message->partition].push_back(message.get());
    size_t handled = 0;
    for (auto& [number, messages] : by_partition) {
      OwnedPartition* o = owned_->Consuming(number);
      if (o == nullptr) continue;
      const kafka::PartitionBatch::Result r = batch_->Handle(*o, messages);
      handled += r.settled;
      if (r.ran) kafka::OffsetCommitter::Handled(*o);
      owned_->AfterBatch(*o, r.stop);
    }
    owned_->MaybeSnapshot();
    if (Steady::now() >= next_commit_ && steady_.load(std::memory_order_relaxed)) {
      committer_.Commit(owned_->All(), /*sync=*/false);
      next_commit_ = Steady::now() + absl::ToChronoMilliseconds(options_.commit_interval);
    }
    return handled;
  }

  absl::Status Close() {
    if (closed_) return absl::OkStatus();
    closed_ = true;
    absl::Status status;
    if (consumer_ != nullptr) {
      // The revocation callback runs inside: every partition committed and deactivated.
      if (rd_kafka_resp_err_t err = rd_kafka_consumer_close(consumer_.get()); err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        status = kafka::KafkaError(err, "closing the consumer");
      }
    }
    if (owned_ != nullptr) owned_->StopAll();
    restorer_.reset();
    if (producer_ != nullptr) {
      producer_->Flush(absl::Seconds(5)).IgnoreError();
      std::lock_guard<std::mutex> lock(mu_);
      closed_producer_ = ProducerCounts();
      producer_.reset();
    }
    std::lock_guard<std::mutex> lock(mu_);  // GetStats reads the consumer's positions
    consumer_.reset();
    return status;
  }

  std::vector<int32_t> ActivePartitions() const {
    return owned_ != nullptr ? owned_->Active() : std::vector<int32_t>();
  }

  KafkaConsumerStats GetStats() const {
    KafkaConsumerStats s;
    counters_.Fill(s);
    s.step_latency = step_latency_.Summary();
    s.fenced = set_->GetStats().fenced;
    if (owned_ != nullptr) owned_->Count(s);
    std::lock_guard<std::mutex> lock(mu_);
    const ProducerCounted p = producer_ != nullptr ? ProducerCounts() : closed_producer_;
    s.changelog_records = p.records;
    s.changelog_bytes = p.bytes;
    s.dead_letter_failures = p.dead_letter_failures;
    FillInputLag(s);
    return s;
  }

  // REQUIRES: mu_ held (the consumer is reset under it). Local calls only: the high watermark is the one
  // the last fetch returned, the position the consumer's own (thread-safe in librdkafka).
  void FillInputLag(KafkaConsumerStats& s) const {
    if (consumer_ == nullptr) return;
    rd_kafka_topic_partition_list_t* assigned = nullptr;
    if (rd_kafka_assignment(consumer_.get(), &assigned) != RD_KAFKA_RESP_ERR_NO_ERROR || assigned == nullptr) return;
    rd_kafka_position(consumer_.get(), assigned);
    for (int i = 0; i < assigned->cnt; ++i) {
      const rd_kafka_topic_partition_t& p = assigned->elems[i];
      int64_t low = 0, high = 0;
      const bool known = rd_kafka_get_watermark_offsets(consumer_.get(), p.topic, p.partition, &low, &high) ==
                             RD_KAFKA_RESP_ERR_NO_ERROR &&
                         high >= 0 && p.offset >= 0;
      // Not known before the partition's first fetch (still restoring, or paused since its assignment).
      s.input_lag[p.partition] = known ? std::max<int64_t>(0, high - p.offset) : -1;
    }
    rd_kafka_topic_partition_list_destroy(assigned);
  }

  std::string ToPrometheus() const { return GetStats().ToPrometheus() + set_->ToPrometheus(); }

 private:
  struct ProducerCounted {
    uint64_t records = 0, bytes = 0, dead_letter_failures = 0;
  };
  ProducerCounted ProducerCounts() const {
    return {producer_->records(), producer_->bytes(), producer_->dead_letter_failures()};
  }

  static void OnRebalance(rd_kafka_t*, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions,
                          void* opaque) {
    static_cast<Impl*>(opaque)->Rebalance(err, partitions);
  }
  static void OnCommitted(rd_kafka_t*, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* offsets,
                          void* opaque) {
    Impl* self = static_cast<Impl*>(opaque);
    self->committer_.Committed(err, offsets, [self](int32_t number) { return self->owned_->Find(number); });
  }
  static int OnStatistics(rd_kafka_t*, char* json, size_t json_len, void* opaque) {
    // ... "cgrp": { "state": "up", "stateage": 97, "join_state": "steady", ...
    const std::string_view stats(json, json_len);
    constexpr std::string_view kKey = "\"join_state\": \"";
    const size_t at = stats.find(kKey);
    if (at != std::string_view::npos) {
      const bool steady = stats.substr(at + kKey.size(), 7) == "steady\"";
      static_cast<Impl*>(opaque)->steady_.store(steady, std::memory_order_relaxed);
    }
    return 0;  // librdkafka frees the JSON
  }
  static void OnError(rd_kafka_t*, int err, const char* reason, void* opaque) {
    static_cast<Impl*>(opaque)->options_.log(
        absl::StrCat("client error: ", rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(err)), ": ", reason));
  }

  bool Cooperative() const { return std::string_view(rd_kafka_rebalance_protocol(consumer_.get())) == "COOPERATIVE"; }

  void Rebalance(rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions) {
    if (owned_ == nullptr) return;  // Start did not finish: never subscribed
    std::vector<int32_t> numbers;
    for (int i = 0; i < partitions->cnt; ++i) numbers.push_back(partitions->elems[i].partition);
    const bool cooperative = Cooperative();
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      options_.log(absl::StrCat("assigned [", absl::StrJoin(numbers, " "), "]"));
      if (cooperative) {
        if (rd_kafka_error_t* e = rd_kafka_incremental_assign(consumer_.get(), partitions)) {
          options_.log(absl::StrCat("incremental assign: ", rd_kafka_error_string(e)));
          rd_kafka_error_destroy(e);
        }
      } else {
        rd_kafka_assign(consumer_.get(), partitions);
      }
      // Paused until restored and claimed: nothing is handled before the partition's state is here.
      rd_kafka_pause_partitions(consumer_.get(), partitions);
      owned_->AssignAll(numbers);
      return;
    }
    const bool lost = rd_kafka_assignment_lost(consumer_.get()) != 0;
    options_.log(absl::StrCat(lost ? "lost" : "revoked", " [", absl::StrJoin(numbers, " "), "]"));
    for (int32_t number : numbers) owned_->Stop(number, lost);
    if (cooperative) {
      if (rd_kafka_error_t* e = rd_kafka_incremental_unassign(consumer_.get(), partitions)) {
        options_.log(absl::StrCat("incremental unassign: ", rd_kafka_error_string(e)));
        rd_kafka_error_destroy(e);
      }
    } else {
      rd_kafka_assign(consumer_.get(), nullptr);
    }
  }

  KafkaConsumerOptions options_;
  PartitionSet* const set_;
  bool reset_earliest_ = true;
  bool closed_ = false;
  std::atomic<bool> steady_{true};  // the group's join state, as librdkafka's statistics last said
  kafka::Client consumer_;
  std::unique_ptr<ChangelogProducer> producer_;
  std::unique_ptr<kafka::PartitionRestorer> restorer_;
  kafka::MemberCounters counters_;
  LatencyHistogram step_latency_;
  kafka::OffsetCommitter committer_;
  std::unique_ptr<kafka::PartitionBatch> batch_;
  std::unique_ptr<kafka::OwnedPartitions> owned_;
  Steady::time_point next_commit_ = Steady::now();
  mutable std::mutex mu_;            // producer_'s replacement by closed_producer_
  ProducerCounted closed_producer_;  // the producer's counts, once it is gone
};

absl::StatusOr<std::unique_ptr<KafkaConsumer>> KafkaConsumer::Create(KafkaConsumerOptions options, PartitionSet* set) {
  if (set == nullptr) return absl::InvalidArgumentError("KafkaConsumer needs a PartitionSet");
  if (options.bootstrap_servers.empty() || options.group_id.empty() || options.input_topic.empty()) {
    return absl::InvalidArgumentError("KafkaConsumerOptions needs bootstrap_servers, group_id and input_topic");
  }
  if (!options.handler) return absl::InvalidArgumentError("KafkaConsumerOptions needs a handler");
  if (!options.event_of) options.event_of = DefaultKafkaEventOf;
  if (options.max_batch == 0) options.max_batch = 1;
  if (options.input_topic.find(':') != std::string::npos) {
    return absl::InvalidArgumentError("the input topic's name may not hold ':' (partition names are built from it)");
  }
  auto impl = std::make_unique<Impl>(std::move(options), set);
  if (absl::Status s = impl->Start(); !s.ok()) return s;
  return std::unique_ptr<KafkaConsumer>(new KafkaConsumer(std::move(impl)));
}

KafkaConsumer::KafkaConsumer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
KafkaConsumer::~KafkaConsumer() = default;
absl::StatusOr<size_t> KafkaConsumer::Poll() { return impl_->Poll(); }
absl::Status KafkaConsumer::Close() { return impl_->Close(); }
std::vector<int32_t> KafkaConsumer::ActivePartitions() const { return impl_->ActivePartitions(); }
KafkaConsumerStats KafkaConsumer::GetStats() const { return impl_->GetStats(); }
std::string KafkaConsumer::ToPrometheus() const { return impl_->ToPrometheus(); }

}  // namespace idem
