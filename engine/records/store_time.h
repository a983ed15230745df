// The store's time: one reading of the injected clock serves every decision — lease ends, retention
// ends, the compaction filter's `now` — made monotonic within the process. A backward step of the wall
// clock makes store time stand still until the clock catches up, so nothing that expired comes back
// (not in RocksDB, not in the caches) and leases do not end early; a forward step ends them early, as
// for any wall-clock TTL. The horizon is not persisted: a restarted process starts from its clock.
// In-memory leases end by the clock's monotonic reading instead (Clock::Monotonic), folded the same way.
//
// Thread safety: every method may be called from any thread. The expiry filter factory and the Store
// share one StoreTime, so the read path and the filter never disagree.
#ifndef IDEM_ENGINE_RECORDS_STORE_TIME_H_
#define IDEM_ENGINE_RECORDS_STORE_TIME_H_

#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "idem/clock.h"
#include "util/sync.h"

namespace idem::engine {

int64_t ToMicros(absl::Time t);
absl::Time FromMicros(int64_t us);

class StoreTime {
 public:
  explicit StoreTime(std::shared_ptr<Clock> clock) : clock_(std::move(clock)) {}

  // Attach: the store's clock replaces the one the column family's options were built with.
  void SetClock(std::shared_ptr<Clock> clock);
  std::shared_ptr<Clock> clock() const;

  // `clock` read now and folded into the horizon. Callers on the hot path pass the clock they hold,
  // so that no lock is taken; NowMicros reads the current one.
  absl::Time Now(const Clock& clock) const {
    const absl::Time t = clock.Now();
    const int64_t us = ToMicros(t);
    const int64_t folded = Fold(us);
    return folded == us ? t : FromMicros(folded);  // exact unless the clock went back
  }
  // The current clock read now, folded; advances the monotonic reading as well.
  int64_t NowMicros() const;
  // A reading (microseconds since the epoch) folded into the horizon: never earlier than any before.
  int64_t Fold(int64_t clock_us) const {
    int64_t seen = horizon_us_.load(std::memory_order_relaxed);
    while (clock_us > seen && !horizon_us_.compare_exchange_weak(seen, clock_us, std::memory_order_relaxed)) {
    }
    return clock_us > seen ? clock_us : seen;
  }

  // The clock's monotonic reading, never going back within the process (a test clock's may).
  absl::Duration Monotonic(const Clock& clock) const {
    const int64_t ns = absl::ToInt64Nanoseconds(clock.Monotonic());
    int64_t seen = monotonic_ns_.load(std::memory_order_relaxed);
    while (ns > seen && !monotonic_ns_.compare_exchange_weak(seen, ns, std::memory_order_relaxed)) {
    }
    return absl::Nanoseconds(ns > seen ? ns : seen);
  }

 private:
  mutable util::Mutex mu_;
  std::shared_ptr<Clock> clock_ ABSL_GUARDED_BY(mu_);
  mutable std::atomic<int64_t> horizon_us_{std::numeric_limits<int64_t>::min()};
  mutable std::atomic<int64_t> monotonic_ns_{std::numeric_limits<int64_t>::min()};
};

}  // namespace idem::engine

#endif  // IDEM_ENGINE_RECORDS_STORE_TIME_H_
