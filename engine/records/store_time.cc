#include "engine/records/store_time.h"

namespace idem::engine {

int64_t ToMicros(absl::Time t) { return absl::ToUnixMicros(t); }
absl::Time FromMicros(int64_t us) { return absl::FromUnixMicros(us); }

void StoreTime::SetClock(std::shared_ptr<Clock> clock) {
  util::MutexLock lock(&mu_);
  clock_ = std::move(clock);
}

std::shared_ptr<Clock> StoreTime::clock() const {
  util::MutexLock lock(&mu_);
  return clock_;
}

int64_t StoreTime::NowMicros() const {
  const std::shared_ptr<Clock> clock = this->clock();
  // Every reading of store time advances the monotonic one too (for a test clock they are one clock):
  // a time the filter or maintenance acted on is a time in-memory leases have seen.
  Monotonic(*clock);
  return Fold(ToMicros(clock->Now()));
}

}  // namespace idem::engine
