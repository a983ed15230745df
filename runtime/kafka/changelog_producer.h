// The changelog's producer: one idempotent librdkafka producer (acks=all) for every partition's
// changelog records (and dead letters), a thread that serves its delivery reports, and per partition a
// RecordTrack that says which records are acknowledged — what an offset commit, a snapshot pointer and
// a clean local copy wait for.
#ifndef IDEM_RUNTIME_KAFKA_CHANGELOG_PRODUCER_H_
#define IDEM_RUNTIME_KAFKA_CHANGELOG_PRODUCER_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/kafka/kafka_client.h"

namespace idem::kafka {

enum class RecordKind { kBatch, kClaim, kSnapshotBegin, kSnapshotChunk, kSnapshotEnd, kDeadLetter };

// One partition's records in flight. Sequence numbers are issued in produce order; a record is settled
// when its delivery report arrives (acknowledged or failed).
class RecordTrack {
 public:
  uint64_t Issue(size_t bytes);
  void Settle(uint64_t seq, RecordKind kind, int64_t offset, bool ok);
  void Fail();  // a record could not even be enqueued
  // A record was refused for its size (larger than message.max.bytes): the batch that made it was too big.
  void TooLarge() { too_large_.store(true, std::memory_order_release); }
  bool too_large() const { return too_large_.load(std::memory_order_acquire); }
  // Whether every record issued up to `seq` was acknowledged (and none failed).
  bool AcknowledgedThrough(uint64_t seq) const;
  bool AllAcknowledged() const { return AcknowledgedThrough(last_issued()); }
  uint64_t last_issued() const;
  bool failed() const { return failed_.load(std::memory_order_acquire); }
  // The changelog offset of the last complete snapshot's Begin (both ends acknowledged), or -1.
  int64_t pointer() const { return pointer_.load(std::memory_order_acquire); }
  // One past the highest changelog offset acknowledged for this track's records (0: none): what an
  // offset commit records as the log's end, for a later restore to prove it read everything.
  int64_t acknowledged_end() const { return acked_end_.load(std::memory_order_acquire); }
  uint64_t bytes_issued() const { return bytes_.load(std::memory_order_relaxed); }
  uint64_t dead_letter_failures() const { return dead_letter_failures_.load(std::memory_order_relaxed); }

 private:
  mutable std::mutex mu_;
  uint64_t next_ = 0;
  std::set<uint64_t> outstanding_;
  std::atomic<bool> failed_{false};
  std::atomic<bool> too_large_{false};
  std::atomic<int64_t> pointer_{-1};
  std::atomic<int64_t> acked_end_{0};
  std::atomic<uint64_t> bytes_{0};
  std::atomic<uint64_t> dead_letter_failures_{0};
  int64_t begin_offset_ = -1;  // of the snapshot being written
};

// Waits for one record's acknowledgement (a claim: its offset tells whether it came first).
class DeliveryWaiter {
 public:
  void Set(absl::StatusOr<int64_t> offset);
  // The record's offset or error once it is settled; nullopt if it is not within `timeout`.
  std::optional<absl::StatusOr<int64_t>> Wait(absl::Duration timeout);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<absl::StatusOr<int64_t>> result_;
};

class ChangelogProducer {
 public:
  // `settings`: the caller's producer settings, applied after idem's.
  static absl::StatusOr<std::unique_ptr<ChangelogProducer>> Create(const std::string& bootstrap_servers,
                                                                   const Settings& settings,
                                                                   std::function<void(std::string_view)> log);
  ~ChangelogProducer();

  // Enqueues a record for `topic`/`partition`, tracked by `track` (may be null) and, when `waiter` is
  // given, reported to it. When the producer's queue is full it waits up to `queue_wait` for room;
  // kUnavailable if it gets none (the record is not sent, and `track` is marked failed).
  absl::Status Produce(const std::string& topic, int32_t partition, std::string_view value,
                       const std::shared_ptr<RecordTrack>& track, RecordKind kind,
                       std::shared_ptr<DeliveryWaiter> waiter = nullptr, std::string_view header_name = {},
                       std::string_view header_value = {}, std::string_view key = {},
                       absl::Duration queue_wait = absl::Seconds(10));
  // Enqueues a message with its own headers (taken over, also on failure): dead letters carry the
  // input message's headers and key as they were. Failures are counted in dead_letter_failures() when
  // `kind` is kDeadLetter.
  absl::Status ProduceWithHeaders(const std::string& topic, std::string_view key, std::string_view value,
                                  rd_kafka_headers_t* headers, const std::shared_ptr<RecordTrack>& track,
                                  RecordKind kind);
  // Waits until every record enqueued so far is settled, up to `timeout` (kDeadlineExceeded).
  absl::Status Flush(absl::Duration timeout);
  rd_kafka_t* client() const { return client_.get(); }

  uint64_t records() const { return records_.load(std::memory_order_relaxed); }
  uint64_t bytes() const { return bytes_.load(std::memory_order_relaxed); }
  uint64_t failures() const { return failures_.load(std::memory_order_relaxed); }
  uint64_t dead_letter_failures() const { return dead_letter_failures_.load(std::memory_order_relaxed); }

 private:
  ChangelogProducer() = default;
  static void OnDelivery(rd_kafka_t* rk, const rd_kafka_message_t* message, void* opaque);

  Client client_;
  std::function<void(std::string_view)> log_;
  std::atomic<bool> stop_{false};
  std::thread poller_;
  std::atomic<uint64_t> records_{0}, bytes_{0}, failures_{0}, dead_letter_failures_{0};
};

}  // namespace idem::kafka

#endif  // IDEM_RUNTIME_KAFKA_CHANGELOG_PRODUCER_H_
