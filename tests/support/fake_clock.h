// A clock that tests move by hand (leases and TTL are tested with it, never with sleeps). No gtest
// dependency, so that fuzz targets can use it too.
#ifndef IDEM_TESTS_SUPPORT_FAKE_CLOCK_H_
#define IDEM_TESTS_SUPPORT_FAKE_CLOCK_H_

#include <mutex>

#include "absl/time/time.h"
#include "idem/clock.h"

namespace idem::testing {

// A clock that moves only when told to. Starts at a whole second so deadlines compare exactly.
class FakeClock : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'700'000'000)) : now_(start) {}
  absl::Time Now() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    std::lock_guard<std::mutex> lock(mu_);
    now_ += d;
  }
  void Set(absl::Time t) {
    std::lock_guard<std::mutex> lock(mu_);
    now_ = t;
  }

 private:
  mutable std::mutex mu_;  // std, not absl: visible to ThreadSanitizer
  absl::Time now_;
};

}  // namespace idem::testing

#endif  // IDEM_TESTS_SUPPORT_FAKE_CLOCK_H_
