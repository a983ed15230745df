#include "runtime/kafka/changelog_producer.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"

namespace idem::kafka {
namespace {

// What travels with a message to its delivery report.
struct Ticket {
  std::shared_ptr<RecordTrack> track;
  uint64_t seq = 0;
  RecordKind kind = RecordKind::kBatch;
  std::shared_ptr<DeliveryWaiter> waiter;
  ChangelogProducer* producer = nullptr;
};

}  // namespace

uint64_t RecordTrack::Issue(size_t bytes) {
  bytes_.fetch_add(bytes, std::memory_order_relaxed);
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t seq = ++next_;
  outstanding_.insert(seq);
  return seq;
}

void RecordTrack::Settle(uint64_t seq, RecordKind kind, int64_t offset, bool ok) {
  std::lock_guard<std::mutex> lock(mu_);
  outstanding_.erase(seq);
  if (!ok && kind == RecordKind::kDeadLetter) {
    // Not the partition's state: the message stays in its input topic; the failure is logged and counted.
    dead_letter_failures_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (!ok) {
    failed_.store(true, std::memory_order_release);
    return;
  }
  if (offset + 1 > acked_end_.load(std::memory_order_relaxed)) acked_end_.store(offset + 1, std::memory_order_release);
  // A partition's records are acknowledged in produce order (idempotent producer), so a snapshot's
  // Begin is settled before its End.
  if (kind == RecordKind::kSnapshotBegin) begin_offset_ = offset;
  if (kind == RecordKind::kSnapshotEnd && begin_offset_ >= 0 && !failed()) {
    pointer_.store(begin_offset_, std::memory_order_release);
  }
}

void RecordTrack::Fail() {
  std::lock_guard<std::mutex> lock(mu_);
  failed_.store(true, std::memory_order_release);
}

bool RecordTrack::AcknowledgedThrough(uint64_t seq) const {
  // failed_ is read under the lock: Settle erases a failed record and marks the failure in one step,
  // so an outstanding set that looks settled always comes with the failure that settled it.
  std::lock_guard<std::mutex> lock(mu_);
  if (failed()) return false;
  return outstanding_.empty() || *outstanding_.begin() > seq;
}

uint64_t RecordTrack::last_issued() const {
  std::lock_guard<std::mutex> lock(mu_);
  return next_;
}

void DeliveryWaiter::Set(absl::StatusOr<int64_t> offset) {
  std::lock_guard<std::mutex> lock(mu_);
  result_ = std::move(offset);
  cv_.notify_all();
}

std::optional<absl::StatusOr<int64_t>> DeliveryWaiter::Wait(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, absl::ToChronoMilliseconds(timeout), [&] { return result_.has_value(); });
  return result_;
}

absl::StatusOr<std::unique_ptr<ChangelogProducer>> ChangelogProducer::Create(
    const std::string& bootstrap_servers, const Settings& settings, std::function<void(std::string_view)> log) {
  Settings all = {
      {"bootstrap.servers", bootstrap_servers},
      {"enable.idempotence", "true"},
      {"acks", "all"},
      {"compression.type", "lz4"},
      {"linger.ms", "2"},
      {"reconnect.backoff.max.ms", "1000"},
  };
  all.insert(all.end(), settings.begin(), settings.end());
  absl::StatusOr<Conf> conf = MakeConf(all);
  if (!conf.ok()) return conf.status();
  std::unique_ptr<ChangelogProducer> producer(new ChangelogProducer());
  producer->log_ = std::move(log);
  rd_kafka_conf_set_dr_msg_cb(conf->get(), &ChangelogProducer::OnDelivery);
  absl::StatusOr<Client> client = MakeClient(RD_KAFKA_PRODUCER, *std::move(conf));
  if (!client.ok()) return client.status();
  producer->client_ = *std::move(client);
  ChangelogProducer* p = producer.get();
  producer->poller_ = std::thread([p] {
    while (!p->stop_.load(std::memory_order_acquire)) rd_kafka_poll(p->client_.get(), 20);
  });
  return producer;
}

ChangelogProducer::~ChangelogProducer() {
  if (client_ != nullptr) rd_kafka_flush(client_.get(), 5000);
  stop_.store(true, std::memory_order_release);
  if (poller_.joinable()) poller_.join();
  // Records still unsettled are reported (as failures) while the client is destroyed.
  client_.reset();
}

void ChangelogProducer::OnDelivery(rd_kafka_t*, const rd_kafka_message_t* message, void*) {
  auto* ticket = static_cast<Ticket*>(message->_private);
  if (ticket == nullptr) return;
  const bool ok = message->err == RD_KAFKA_RESP_ERR_NO_ERROR;
  if (!ok) {
    ticket->producer->failures_.fetch_add(1, std::memory_order_relaxed);
    if (ticket->kind == RecordKind::kDeadLetter) {
      ticket->producer->dead_letter_failures_.fetch_add(1, std::memory_order_relaxed);
    }
    if (ticket->producer->log_) {
      ticket->producer->log_(absl::StrCat(ticket->kind == RecordKind::kDeadLetter ? "dead letter" : "changelog record",
                                          " to ", rd_kafka_topic_name(message->rkt), "/", message->partition,
                                          " failed: ", rd_kafka_err2str(message->err)));
    }
  }
  if (ticket->track != nullptr) {
    if (message->err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) ticket->track->TooLarge();
    ticket->track->Settle(ticket->seq, ticket->kind, message->offset, ok);
  }
  if (ticket->waiter != nullptr) {
    if (ok) {
      ticket->waiter->Set(static_cast<int64_t>(message->offset));
    } else {
      ticket->waiter->Set(KafkaError(message->err, "producing to the changelog"));
    }
  }
  delete ticket;
}

absl::Status ChangelogProducer::Produce(const std::string& topic, int32_t partition, std::string_view value,
                                        const std::shared_ptr<RecordTrack>& track, RecordKind kind,
                                        std::shared_ptr<DeliveryWaiter> waiter, std::string_view header_name,
                                        std::string_view header_value, std::string_view key,
                                        absl::Duration queue_wait) {
  auto* ticket = new Ticket{track, 0, kind, std::move(waiter), this};
  if (track != nullptr) ticket->seq = track->Issue(value.size());
  const auto deadline = std::chrono::steady_clock::now() + absl::ToChronoMilliseconds(queue_wait);
  const std::string name(header_name);  // librdkafka wants it NUL-terminated
  for (;;) {
    rd_kafka_resp_err_t err;
    if (!header_name.empty()) {
      err = rd_kafka_producev(
          client_.get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(partition),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
          RD_KAFKA_V_KEY(key.data(), key.size()),
          RD_KAFKA_V_HEADER(name.c_str(), header_value.data(), static_cast<ssize_t>(header_value.size())),
          RD_KAFKA_V_OPAQUE(ticket), RD_KAFKA_V_END);
    } else {
      err = rd_kafka_producev(client_.get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(partition),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                              RD_KAFKA_V_OPAQUE(ticket), RD_KAFKA_V_END);
    }
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      records_.fetch_add(1, std::memory_order_relaxed);
      bytes_.fetch_add(value.size(), std::memory_order_relaxed);
      return absl::OkStatus();
    }
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || std::chrono::steady_clock::now() >= deadline) {
      failures_.fetch_add(1, std::memory_order_relaxed);
      if (track != nullptr) {
        if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) track->TooLarge();
        track->Settle(ticket->seq, kind, -1, false);
      }
      if (ticket->waiter != nullptr) ticket->waiter->Set(KafkaError(err, "producing to the changelog"));
      delete ticket;
      return KafkaError(err, absl::StrCat("producing to ", topic, "/", partition));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // the poller drains the queue
  }
}

absl::Status ChangelogProducer::ProduceWithHeaders(const std::string& topic, std::string_view key,
                                                   std::string_view value, rd_kafka_headers_t* headers,
                                                   const std::shared_ptr<RecordTrack>& track, RecordKind kind) {
  auto* ticket = new Ticket{track, 0, kind, nullptr, this};
  if (track != nullptr) ticket->seq = track->Issue(value.size());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    const rd_kafka_resp_err_t err = rd_kafka_producev(
        client_.get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
        RD_KAFKA_V_KEY(key.data(), key.size()), RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_OPAQUE(ticket), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {  // the headers are librdkafka's now
      records_.fetch_add(1, std::memory_order_relaxed);
      bytes_.fetch_add(value.size(), std::memory_order_relaxed);
      return absl::OkStatus();
    }
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || std::chrono::steady_clock::now() >= deadline) {
      rd_kafka_headers_destroy(headers);
      failures_.fetch_add(1, std::memory_order_relaxed);
      if (kind == RecordKind::kDeadLetter) dead_letter_failures_.fetch_add(1, std::memory_order_relaxed);
      if (track != nullptr) track->Settle(ticket->seq, kind, -1, false);
      delete ticket;
      return KafkaError(err, absl::StrCat("producing to ", topic));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

absl::Status ChangelogProducer::Flush(absl::Duration timeout) {
  const rd_kafka_resp_err_t err = rd_kafka_flush(client_.get(), static_cast<int>(absl::ToInt64Milliseconds(timeout)));
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return absl::OkStatus();
  return absl::DeadlineExceededError("the changelog producer did not settle its records in time");
}

}  // namespace idem::kafka
