// idem/processor.h — the consumer runtime: turns a handler into an exactly-once step.
//
//   idem::Processor processor(store.get());
//   auto r = processor.Handle({event_id, payload_hash}, [&](const idem::EventContext& ctx)
//                                 -> absl::StatusOr<std::string> {
//     ctx.effects->Put(ledger_cf, account, new_balance);   // applied atomically with the done marker
//     return "receipt";
//   });
//   if (r.ShouldAck()) queue.Ack(message);                   // never ack what was not committed
//
// Handle reserves the ID; on a duplicate it returns the stored result without calling the handler; if
// another worker holds it, it says retry later (optionally after waiting in-process for that holder);
// otherwise it runs the handler with the fencing token and a WriteBatch for effects in the same DB, then
// commits effects and marker atomically, or releases the ID when the handler fails.
//
// Store failure: when the store answers kUnavailable (disk full, I/O error), the Processor pauses —
// every Handle returns kUnavailable at once without touching the store — and its background thread
// retries Store::Resume with exponential backoff and jitter until the store is healthy, then resumes
// by itself. The same thread renews running handlers' leases (heartbeats). A Processor starts one
// thread of its own, or shares a ProcessorThread with others (ProcessorOptions::thread). Commits whose outcome was
// unknown are settled after recovery (released if they did not land), so their redeliveries are not stuck behind a dead
// lease.
//
// Thread safety: Handle and HandleBatch may be called from many threads at once. The Processor borrows
// the Store, which must outlive it.
#ifndef IDEM_PROCESSOR_H_
#define IDEM_PROCESSOR_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "idem/stats.h"
#include "idem/store.h"

namespace rocksdb {
class WriteBatch;
}

namespace idem {

enum class Outcome {
  kApplied,      // the handler ran and its effects committed with the marker. Ack.
  kDuplicate,    // done before; the handler was not called; `result` is the stored one. Ack.
  kRetryLater,   // another worker holds the ID, or the handler failed transiently (ID released). Do not ack.
  kConflict,     // the ID was seen with a different payload fingerprint: a producer reused an ID. Dead-letter.
  kRejected,     // the handler refused the payload (kInvalidArgument/kFailedPrecondition). Dead-letter.
  kInvalid,      // the event itself is unusable (no ID, ID over the limit), or its commit can never
                 // succeed (a result over max_result_bytes, effects refused); the ID was released. Dead-letter.
  kCorrupt,      // the store's record of this ID does not decode (kDataLoss). Dead-letter; an operator can
                 // remove the record with Store::Forget / `idemctl forget` (which may admit a duplicate).
  kLeaseLost,    // the commit was refused: the lease was taken over; effects not written. Do not ack.
  kUnavailable,  // the store is failing; consumption is paused until it recovers. Do not ack.
};

std::string_view OutcomeName(Outcome outcome);

struct Event {
  Event(std::string_view event_id, std::optional<uint64_t> payload_fingerprint = std::nullopt)  // NOLINT
      : id(event_id), fingerprint(payload_fingerprint) {}
  // Borrowed for the duration of Handle/HandleBatch only: the Processor copies what it keeps, so the
  // handler may reuse the buffer it points into.
  std::string_view id;
  // Hash of the payload (idem::Fingerprint / FingerprintOf, idem/fingerprint.h). Optional: without it,
  // reuse of an ID for another payload is not detected.
  std::optional<uint64_t> fingerprint;
};

struct HandleResult {
  Outcome outcome = Outcome::kUnavailable;
  std::string result;   // the handler's result (kApplied) or the stored one (kDuplicate, kConflict)
  uint64_t token = 0;   // the fencing token the handler ran under (kApplied), or the commit's (kDuplicate)
  absl::Status status;  // why, for every outcome but kApplied/kDuplicate
  // kDuplicate: until when the ID is remembered; kRetryLater for an ID in flight: when its lease ends.
  absl::Time deadline;
  // Whether the queue may forget the message. Dead-letter outcomes are acked only after the caller
  // has recorded the message elsewhere; see DeadLetter().
  bool ShouldAck() const { return outcome == Outcome::kApplied || outcome == Outcome::kDuplicate; }
  bool DeadLetter() const {
    return outcome == Outcome::kConflict || outcome == Outcome::kRejected || outcome == Outcome::kInvalid ||
           outcome == Outcome::kCorrupt;
  }
};

struct EventContext {
  std::string_view event_id;
  uint64_t token = 0;            // pass to downstream systems that can fence stale writers
  rocksdb::WriteBatch* effects;  // writes to other column families of the store's DB
};

// Returns the result to store with the marker, or an error: kInvalidArgument / kFailedPrecondition
// reject the event for good (kRejected); anything else is transient (kRetryLater).
using Handler = std::function<absl::StatusOr<std::string>(const EventContext&)>;

// What Handle does with the reservation when the handler fails.
enum class OnHandlerFailure {
  kRelease,        // give the ID back at once: the redelivery is handled again (default)
  kKeepReserved,   // keep it until the lease ends: redeliveries meanwhile are kRetryLater
  kCommitFailure,  // commit the failure ("failed: <message>", no effects): redeliveries are duplicates
                   // of it and the event ends here (Camel's removeOnFailure(false)); outcome kRejected
};

namespace util {
class Scheduler;
}  // namespace util

// One background thread for the recoveries and heartbeats of many Processors: a consumer with a
// Processor per partition (the Kafka member) shares one, so its threads do not grow with its
// partitions. Its work runs one step at a time: a Resume that takes long (a DB reopening) delays the
// other Processors' heartbeats by as long, so keep leases well above it (the default heartbeat is a
// third of the lease).
// Thread safety: any number of Processors may share it, from any threads; each holds it (through its
// options) until destroyed. Ownership: shared.
class ProcessorThread {
 public:
  ProcessorThread();
  ~ProcessorThread();
  ProcessorThread(const ProcessorThread&) = delete;
  ProcessorThread& operator=(const ProcessorThread&) = delete;

 private:
  friend class Processor;
  std::unique_ptr<util::Scheduler> scheduler_;
};

struct ProcessorOptions {
  // Renew the leases of running handlers this often. Zero: a third of the store's lease. Negative: off.
  absl::Duration heartbeat = absl::ZeroDuration();
  // The store's lease, needed to derive the heartbeat (Options::lease of the Store).
  absl::Duration lease = absl::Seconds(30);
  OnHandlerFailure on_handler_failure = OnHandlerFailure::kRelease;
  // Wait this long in-process for an in-flight holder instead of answering kRetryLater at once.
  absl::Duration wait_in_flight = absl::ZeroDuration();
  // Recovery from store failure: Resume retried with exponential backoff and full jitter.
  absl::Duration backoff_initial = absl::Milliseconds(50);
  absl::Duration backoff_max = absl::Seconds(5);
  // Where the background work runs. Null (default): a thread of the Processor's own.
  std::shared_ptr<ProcessorThread> thread;
};

struct ProcessorStats {
  uint64_t applied = 0, duplicates = 0, retry_later = 0, conflicts = 0, rejected = 0, invalid = 0, corrupt = 0;
  uint64_t lease_lost = 0, unavailable = 0;
  uint64_t pauses = 0, resumes = 0, resume_attempts = 0, heartbeats = 0;
  bool paused = false;
  LatencySummary step_latency;  // one Handle (reserve + handler + commit)
  Stats store;                  // the store's own counters
  std::string ToPrometheus() const;
};

class Processor {
 public:
  explicit Processor(Store* store, ProcessorOptions options = ProcessorOptions());
  ~Processor();
  Processor(const Processor&) = delete;
  Processor& operator=(const Processor&) = delete;

  HandleResult Handle(const Event& event, const Handler& handler);
  // A polled batch: one ReserveBatch, the handler per reserved event (each with its own effects batch),
  // one CommitBatch. Element i answers events[i].
  std::vector<HandleResult> HandleBatch(absl::Span<const Event> events, const Handler& handler);
  // With a tag for the batch's commit write (Store::CommitBatch's, which its commit hook receives).
  std::vector<HandleResult> HandleBatch(absl::Span<const Event> events, const Handler& handler, int64_t commit_tag);

  // False while paused by a store failure.
  bool healthy() const;
  // Blocks until healthy or `timeout` passes; OK when healthy.
  absl::Status AwaitHealthy(absl::Duration timeout);

  ProcessorStats GetStats() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace idem

#endif  // IDEM_PROCESSOR_H_
