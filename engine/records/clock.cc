#include "idem/clock.h"

#include <time.h>

namespace idem {
namespace {

// clock_gettime directly (a vDSO call): absl::Now() adds its own calibration work on every reading,
// and this is read on every store call.
class WallClock final : public Clock {
 public:
  absl::Time Now() const override {
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return absl::TimeFromTimespec(ts);
  }
  absl::Duration Monotonic() const override {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);  // what std::chrono::steady_clock reads
    return absl::DurationFromTimespec(ts);
  }
};

}  // namespace

std::shared_ptr<Clock> SystemClock() {
  static const std::shared_ptr<Clock> clock = std::make_shared<WallClock>();
  return clock;
}

}  // namespace idem
