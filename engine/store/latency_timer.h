// Times one call into a LatencyHistogram: started at construction, recorded at destruction, so every
// return path of a Reserve or Commit is counted. Used by one thread.
#ifndef IDEM_ENGINE_STORE_LATENCY_TIMER_H_
#define IDEM_ENGINE_STORE_LATENCY_TIMER_H_

#include <chrono>
#include <cstdint>

#include "idem/latency_histogram.h"

namespace idem::engine {

class LatencyTimer {
 public:
  explicit LatencyTimer(LatencyHistogram* histogram)
      : histogram_(histogram), start_(std::chrono::steady_clock::now()) {}
  ~LatencyTimer() {
    histogram_->Record(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start_).count()));
  }
  LatencyTimer(const LatencyTimer&) = delete;
  LatencyTimer& operator=(const LatencyTimer&) = delete;

 private:
  LatencyHistogram* const histogram_;
  const std::chrono::steady_clock::time_point start_;
};

}  // namespace idem::engine

#endif  // IDEM_ENGINE_STORE_LATENCY_TIMER_H_
