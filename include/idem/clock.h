// idem/clock.h — the source of time for leases and retention.
//
// The store reads time only through a Clock, so that tests (and tools that simulate many TTL periods in a
// short run) can move time by hand. The same Clock feeds the read path (a record past its deadline reads as
// absent) and the compaction filter (which physically removes it), so the two never disagree.
//
// Thread safety: implementations must be safe to call from any thread, including RocksDB's background
// compaction threads. Now() must not throw and should be cheap: it is called on every operation.
#ifndef IDEM_CLOCK_H_
#define IDEM_CLOCK_H_

#include <memory>

#include "absl/time/time.h"

namespace idem {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
  // A reading that never jumps, for durations that must not follow the wall clock: in-memory leases end
  // by it (Options::durable_reservations = false), so an NTP step or a hand-set clock neither ends a
  // lease early nor stretches it. Only differences between readings matter. The default derives it from
  // Now(), which is right for test clocks that move only when told.
  virtual absl::Duration Monotonic() const { return Now() - absl::UnixEpoch(); }
};

// The wall clock (absl::Now()) with CLOCK_MONOTONIC for Monotonic(). Shared, never null, lives for the
// whole process.
std::shared_ptr<Clock> SystemClock();

}  // namespace idem

#endif  // IDEM_CLOCK_H_
