#include "idem/processor.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "idem/latency_histogram.h"
#include "rocksdb/write_batch.h"
#include "util/scheduler.h"

namespace idem {

namespace {

// Every outcome in one place: its name (logs, Prometheus labels) and its counter in ProcessorStats. A new
// outcome is added here and in the enum, nowhere else.
struct OutcomeInfo {
  Outcome outcome;
  std::string_view name;
  uint64_t ProcessorStats::*counter;
};
constexpr OutcomeInfo kOutcomes[] = {
    {Outcome::kApplied, "applied", &ProcessorStats::applied},
    {Outcome::kDuplicate, "duplicate", &ProcessorStats::duplicates},
    {Outcome::kRetryLater, "retry_later", &ProcessorStats::retry_later},
    {Outcome::kConflict, "conflict", &ProcessorStats::conflicts},
    {Outcome::kRejected, "rejected", &ProcessorStats::rejected},
    {Outcome::kInvalid, "invalid", &ProcessorStats::invalid},
    {Outcome::kCorrupt, "corrupt", &ProcessorStats::corrupt},
    {Outcome::kLeaseLost, "lease_lost", &ProcessorStats::lease_lost},
    {Outcome::kUnavailable, "unavailable", &ProcessorStats::unavailable},
};
constexpr size_t kOutcomeCount = sizeof(kOutcomes) / sizeof(kOutcomes[0]);

size_t IndexOf(Outcome outcome) {
  for (size_t i = 0; i < kOutcomeCount; ++i) {
    if (kOutcomes[i].outcome == outcome) return i;
  }
  return kOutcomeCount - 1;  // unreachable for a valid enum value
}

}  // namespace

std::string_view OutcomeName(Outcome outcome) { return kOutcomes[IndexOf(outcome)].name; }

class Processor::Impl {
 public:
  Impl(Store* store, ProcessorOptions options, util::Scheduler* shared)
      : store_(store),
        options_(std::move(options)),
        own_(shared == nullptr ? std::make_unique<util::Scheduler>() : nullptr),
        scheduler_(shared != nullptr ? shared : own_.get()) {
    heartbeat_ = options_.heartbeat == absl::ZeroDuration() ? options_.lease / 3 : options_.heartbeat;
    // Dormant until a failure pauses the Processor (Pause wakes it).
    recovery_task_ = scheduler_->Add([this] { return RecoveryStep(); }, absl::InfiniteDuration());
    if (heartbeat_ > absl::ZeroDuration()) {
      heartbeat_task_ = scheduler_->Add(
          [this] {
            HeartbeatOnce();
            return heartbeat_;
          },
          heartbeat_);
    }
  }

  ~Impl() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    // After these, no step of this Processor runs again (one in progress ends first).
    scheduler_->Remove(recovery_task_);
    if (heartbeat_task_ != 0) scheduler_->Remove(heartbeat_task_);
  }

  HandleResult Handle(const Event& event, const Handler& handler) {
    const auto start = std::chrono::steady_clock::now();
    HandleResult out = HandleOne(event, handler);
    Count(out.outcome);
    step_latency_.Record(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count()));
    return out;
  }

  std::vector<HandleResult> HandleBatch(absl::Span<const Event> events, const Handler& handler, int64_t tag) {
    const auto start = std::chrono::steady_clock::now();
    std::vector<HandleResult> out(events.size());
    if (paused_.load()) {
      for (auto& r : out) r = Paused();
    } else {
      HandleMany(events, handler, tag, &out);
    }
    const uint64_t each = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count() /
        std::max<size_t>(1, events.size()));
    for (const HandleResult& r : out) {
      Count(r.outcome);
      step_latency_.Record(each);
    }
    return out;
  }

  bool healthy() const { return !paused_.load(); }

  absl::Status AwaitHealthy(absl::Duration timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    const bool ok = cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [this] { return !paused_.load() || stop_; });
    return ok && !paused_.load() ? absl::OkStatus() : absl::UnavailableError("the store has not recovered yet");
  }

  ProcessorStats GetStats() const {
    ProcessorStats s;
    for (size_t i = 0; i < kOutcomeCount; ++i) s.*kOutcomes[i].counter = outcomes_[i].load();
    s.pauses = pauses_;
    s.resumes = resumes_;
    s.resume_attempts = resume_attempts_;
    s.heartbeats = heartbeats_;
    s.paused = paused_.load();
    s.step_latency = step_latency_.Summary();
    s.store = store_->GetStats();
    return s;
  }

 private:
  static HandleResult Result(Outcome outcome, absl::Status status = absl::OkStatus(), std::string result = {},
                             uint64_t token = 0) {
    HandleResult r;
    r.outcome = outcome;
    r.status = std::move(status);
    r.result = std::move(result);
    r.token = token;
    return r;
  }

  HandleResult Paused() const {
    return Result(Outcome::kUnavailable, absl::UnavailableError("consumption is paused until the idem store recovers"));
  }

  // Maps a failed store call to an outcome, pausing on unavailability.
  HandleResult FromStoreError(const absl::Status& status) {
    switch (status.code()) {
      case absl::StatusCode::kInvalidArgument: return Result(Outcome::kInvalid, status);
      case absl::StatusCode::kDataLoss:  // this ID's record is unreadable: retrying cannot help
        return Result(Outcome::kCorrupt, status);
      case absl::StatusCode::kUnavailable:
      case absl::StatusCode::kFailedPrecondition:  // closed
        Pause();
        return Result(Outcome::kUnavailable, status);
      default: return Result(Outcome::kRetryLater, status);
    }
  }

  static HandleResult FromVerdict(const Reservation& r) {
    switch (r.verdict) {
      case Verdict::kDuplicate: {
        HandleResult out = Result(Outcome::kDuplicate, absl::OkStatus(), r.result, r.token);
        out.deadline = r.deadline;
        return out;
      }
      case Verdict::kInFlight: {
        HandleResult out =
            Result(Outcome::kRetryLater, absl::UnavailableError("another worker holds this event's lease"));
        out.deadline = r.deadline;
        return out;
      }
      case Verdict::kConflict:
        return Result(Outcome::kConflict,
                      absl::AlreadyExistsError("event ID seen before with a different payload fingerprint"), r.result);
      case Verdict::kReserved: break;
    }
    return Result(Outcome::kRetryLater, absl::InternalError("unexpected verdict"));
  }

  // Runs the handler for a reserved event; fills *effects. Handler exceptions count as transient errors:
  // nothing may escape into the caller's consumer loop.
  absl::StatusOr<std::string> RunHandler(std::string_view id, uint64_t token, const Handler& handler,
                                         rocksdb::WriteBatch* effects) {
    Track(id, token);
    absl::StatusOr<std::string> result;
    try {
      result = handler(EventContext{id, token, effects});
    } catch (const std::exception& e) {
      result = absl::InternalError(absl::StrCat("handler threw: ", e.what()));
    } catch (...) {
      result = absl::InternalError("handler threw");
    }
    Untrack(id);
    return result;
  }

  // The handler failed: give the ID back so the redelivery can retry (or the dead-letter path runs).
  HandleResult AfterHandlerError(std::string_view id, uint64_t token, const absl::Status& error) {
    const bool permanent =
        error.code() == absl::StatusCode::kInvalidArgument || error.code() == absl::StatusCode::kFailedPrecondition;
    switch (options_.on_handler_failure) {
      case OnHandlerFailure::kKeepReserved:
        break;  // the lease runs out by itself (the heartbeat stopped with the handler)
      case OnHandlerFailure::kCommitFailure: {
        // Kept short: the stored result is a marker for later deliveries, not a log.
        std::string failed = absl::StrCat("failed: ", error.message().substr(0, 256));
        const absl::Status committed = store_->Commit(id, token, failed, nullptr);
        if (committed.ok()) return Result(Outcome::kRejected, error, std::move(failed), token);
        if (committed.code() == absl::StatusCode::kUnavailable) {
          Remember(id, token);
          Pause();
        }
        return Result(Outcome::kRetryLater, committed, {}, token);
      }
      case OnHandlerFailure::kRelease:
        if (store_->Release(id, token).code() == absl::StatusCode::kUnavailable) {
          Remember(id, token);
          Pause();
        }
        break;
    }
    return Result(permanent ? Outcome::kRejected : Outcome::kRetryLater, error, {}, token);
  }

  HandleResult AfterCommit(std::string_view id, uint64_t token, const absl::Status& committed, std::string result) {
    switch (committed.code()) {
      case absl::StatusCode::kOk: return Result(Outcome::kApplied, absl::OkStatus(), std::move(result), token);
      case absl::StatusCode::kAborted: return Result(Outcome::kLeaseLost, committed, {}, token);
      case absl::StatusCode::kUnavailable:
        Remember(id, token);  // outcome unknown: settled after recovery
        Pause();
        return Result(Outcome::kUnavailable, committed, {}, token);
      case absl::StatusCode::kFailedPrecondition:  // closed: nothing was written
        Pause();
        return Result(Outcome::kUnavailable, committed, {}, token);
      case absl::StatusCode::kInvalidArgument:  // the same commit would fail the same way every time
      case absl::StatusCode::kDataLoss: {
        // Nothing was written. Give the ID back so it does not sit out a lease, and end the event.
        if (store_->Release(id, token).code() == absl::StatusCode::kUnavailable) {
          Remember(id, token);
          Pause();
        }
        return Result(committed.code() == absl::StatusCode::kDataLoss ? Outcome::kCorrupt : Outcome::kInvalid,
                      committed, {}, token);
      }
      default: return Result(Outcome::kRetryLater, committed, {}, token);
    }
  }

  HandleResult HandleOne(const Event& event, const Handler& handler) {
    if (paused_.load()) return Paused();
    // Our own copy: the caller's bytes may change while the handler runs (a reused receive buffer),
    // and the commit, the release and the heartbeat must all name the ID that was reserved.
    const std::string id(event.id);
    ReserveOptions reserve_options;
    reserve_options.fingerprint = event.fingerprint;
    reserve_options.wait = options_.wait_in_flight;
    absl::StatusOr<Reservation> r = store_->Reserve(id, reserve_options);
    if (!r.ok()) return FromStoreError(r.status());
    if (r->verdict != Verdict::kReserved) return FromVerdict(*r);
    rocksdb::WriteBatch effects;
    absl::StatusOr<std::string> result = RunHandler(id, r->token, handler, &effects);
    if (!result.ok()) return AfterHandlerError(id, r->token, result.status());
    // Commit first: it reads *result, which the last argument of AfterCommit takes over.
    const absl::Status committed = store_->Commit(id, r->token, *result, &effects);
    return AfterCommit(id, r->token, committed, *std::move(result));
  }

  void HandleMany(absl::Span<const Event> events, const Handler& handler, int64_t tag, std::vector<HandleResult>* out) {
    // Copies, as in HandleOne: handlers may change the caller's buffers.
    std::vector<std::string> ids;
    ids.reserve(events.size());
    for (const Event& e : events) ids.emplace_back(e.id);
    // Reservations: one ReserveBatch, with the events' fingerprints when any has one.
    std::vector<std::string_view> views(ids.begin(), ids.end());
    std::vector<std::optional<uint64_t>> fingerprints;
    if (std::any_of(events.begin(), events.end(), [](const Event& e) { return e.fingerprint.has_value(); })) {
      fingerprints.reserve(events.size());
      for (const Event& e : events) fingerprints.push_back(e.fingerprint);
    }
    std::vector<absl::StatusOr<Reservation>> reserved = store_->ReserveBatch(views, fingerprints);
    std::vector<std::unique_ptr<rocksdb::WriteBatch>> effects(events.size());
    std::vector<std::string> results(events.size());
    std::vector<CommitRequest> commits;
    std::vector<size_t> committing;
    for (size_t i = 0; i < events.size(); ++i) {
      if (!reserved[i].ok()) {
        (*out)[i] = FromStoreError(reserved[i].status());
        continue;
      }
      if (reserved[i]->verdict != Verdict::kReserved) {
        (*out)[i] = FromVerdict(*reserved[i]);
        continue;
      }
      const uint64_t token = reserved[i]->token;
      effects[i] = std::make_unique<rocksdb::WriteBatch>();
      absl::StatusOr<std::string> result = RunHandler(ids[i], token, handler, effects[i].get());
      if (!result.ok()) {
        (*out)[i] = AfterHandlerError(ids[i], token, result.status());
        continue;
      }
      results[i] = *std::move(result);
      commits.push_back(CommitRequest{ids[i], token, results[i], effects[i].get()});
      committing.push_back(i);
    }
    if (commits.empty()) return;
    std::vector<absl::Status> committed = store_->CommitBatch(commits, tag);
    for (size_t k = 0; k < committing.size(); ++k) {
      const size_t i = committing[k];
      (*out)[i] = AfterCommit(ids[i], commits[k].token, committed[k], results[i]);
    }
  }

  void Count(Outcome outcome) { outcomes_[IndexOf(outcome)]++; }

  // ---- Store failure: pause, recover with backoff, settle unknown commits, resume ----

  void Pause() {
    if (!paused_.exchange(true)) {
      pauses_++;
      {
        std::lock_guard<std::mutex> lock(mu_);
        ceiling_ = options_.backoff_initial;
      }
      scheduler_->Wake(recovery_task_);
    }
  }

  void Remember(std::string_view id, uint64_t token) {
    std::lock_guard<std::mutex> lock(mu_);
    unknown_.emplace_back(std::string(id), token);
  }

  // One recovery attempt, on the scheduler's thread; returns when to try again.
  absl::Duration RecoveryStep() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_ || !paused_.load()) return absl::InfiniteDuration();
    }
    resume_attempts_++;
    const bool recovered = store_->Resume().ok() && store_->Health().ok() && Settle();
    std::lock_guard<std::mutex> lock(mu_);
    if (recovered) {
      paused_.store(false);
      resumes_++;
      cv_.notify_all();
      return absl::InfiniteDuration();
    }
    if (stop_) return absl::InfiniteDuration();
    // Full jitter: a random wait in [0, ceiling], the ceiling doubling up to backoff_max.
    const int64_t ceiling_us = std::max<int64_t>(1, absl::ToInt64Microseconds(ceiling_));
    const absl::Duration wait = absl::Microseconds(std::uniform_int_distribution<int64_t>(0, ceiling_us)(rng_));
    ceiling_ = std::min(ceiling_ * 2, options_.backoff_max);
    return wait;
  }

  // Commits that failed with an unknown outcome: if they did not land, release them so their
  // redeliveries are processed now instead of after the lease. False if the store is still failing.
  bool Settle() {
    std::vector<std::pair<std::string, uint64_t>> pending;
    {
      std::lock_guard<std::mutex> lock(mu_);
      pending.swap(unknown_);
    }
    bool ok = true;
    for (auto& [id, token] : pending) {
      absl::StatusOr<RecordInfo> info = store_->Peek(id);
      absl::Status s;
      if (info.ok() && info->state == RecordInfo::State::kDone && info->token == token) continue;  // it landed
      s = store_->Release(id, token);
      if (s.code() == absl::StatusCode::kUnavailable) {
        ok = false;
        Remember(id, token);
      }
    }
    return ok;
  }

  // ---- Heartbeats: renew the leases of running handlers ----

  void Track(std::string_view id, uint64_t token) {
    if (heartbeat_ <= absl::ZeroDuration()) return;
    std::lock_guard<std::mutex> lock(active_mu_);
    active_[std::string(id)] = token;
  }
  void Untrack(std::string_view id) {
    if (heartbeat_ <= absl::ZeroDuration()) return;
    std::lock_guard<std::mutex> lock(active_mu_);
    active_.erase(std::string(id));
  }

  void HeartbeatOnce() {
    std::map<std::string, uint64_t> running;
    {
      std::lock_guard<std::mutex> active_lock(active_mu_);
      running = active_;
    }
    for (const auto& [id, token] : running) {
      if (store_->Extend(id, token).ok()) heartbeats_++;
    }
  }

  Store* const store_;
  const ProcessorOptions options_;
  absl::Duration heartbeat_;

  std::atomic<uint64_t> outcomes_[kOutcomeCount] = {};  // indexed like kOutcomes
  std::atomic<uint64_t> pauses_{0}, resumes_{0}, resume_attempts_{0};
  std::atomic<uint64_t> heartbeats_{0};
  LatencyHistogram step_latency_;
  std::atomic<bool> paused_{false};

  std::mutex mu_;  // guards stop_, unknown_, ceiling_, rng_; the condition AwaitHealthy waits on
  std::condition_variable cv_;
  bool stop_ = false;
  std::vector<std::pair<std::string, uint64_t>> unknown_;
  absl::Duration ceiling_;  // the recovery's backoff ceiling
  std::mt19937_64 rng_{std::random_device{}()};

  std::mutex active_mu_;
  std::map<std::string, uint64_t> active_;  // guarded by active_mu_

  // The background work (recovery, heartbeats) runs on the shared ProcessorThread's scheduler, or on a
  // Processor's own.
  const std::unique_ptr<util::Scheduler> own_;
  util::Scheduler* const scheduler_;
  uint64_t recovery_task_ = 0;
  uint64_t heartbeat_task_ = 0;
};

ProcessorThread::ProcessorThread() : scheduler_(std::make_unique<util::Scheduler>()) {}
ProcessorThread::~ProcessorThread() = default;

Processor::Processor(Store* store, ProcessorOptions options)
    : impl_(std::make_unique<Impl>(store, options, options.thread ? options.thread->scheduler_.get() : nullptr)) {}
Processor::~Processor() = default;
HandleResult Processor::Handle(const Event& event, const Handler& handler) { return impl_->Handle(event, handler); }
std::vector<HandleResult> Processor::HandleBatch(absl::Span<const Event> events, const Handler& handler) {
  return impl_->HandleBatch(events, handler, -1);
}
std::vector<HandleResult> Processor::HandleBatch(absl::Span<const Event> events, const Handler& handler,
                                                 int64_t commit_tag) {
  return impl_->HandleBatch(events, handler, commit_tag);
}
bool Processor::healthy() const { return impl_->healthy(); }
absl::Status Processor::AwaitHealthy(absl::Duration timeout) { return impl_->AwaitHealthy(timeout); }
ProcessorStats Processor::GetStats() const { return impl_->GetStats(); }

std::string ProcessorStats::ToPrometheus() const {
  std::string out;
  absl::StrAppend(&out, "# HELP idem_consumer_events_total Events by outcome.\n",
                  "# TYPE idem_consumer_events_total counter\n");
  for (const OutcomeInfo& o : kOutcomes) {
    absl::StrAppend(&out, "idem_consumer_events_total{outcome=\"", absl::string_view(o.name.data(), o.name.size()),
                    "\"} ", this->*o.counter, "\n");
  }
  absl::StrAppend(&out, "# TYPE idem_consumer_paused gauge\nidem_consumer_paused ", paused ? 1 : 0, "\n");
  absl::StrAppend(&out, "# TYPE idem_consumer_pauses_total counter\nidem_consumer_pauses_total ", pauses, "\n");
  absl::StrAppend(&out, "# TYPE idem_consumer_resumes_total counter\nidem_consumer_resumes_total ", resumes, "\n");
  absl::StrAppend(&out, "# TYPE idem_consumer_step_seconds summary\n");
  absl::StrAppend(&out, "idem_consumer_step_seconds{quantile=\"0.5\"} ", absl::ToDoubleSeconds(step_latency.p50), "\n",
                  "idem_consumer_step_seconds{quantile=\"0.99\"} ", absl::ToDoubleSeconds(step_latency.p99), "\n");
  absl::StrAppend(&out, store.ToPrometheus());
  return out;
}

}  // namespace idem
