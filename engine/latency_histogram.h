// A lock-free log-linear latency histogram: 8 sub-buckets per power of two of nanoseconds (relative error
// below 1/8), recorded with relaxed atomic increments so that concurrent operations never wait on it.
#ifndef IDEM_ENGINE_LATENCY_HISTOGRAM_H_
#define IDEM_ENGINE_LATENCY_HISTOGRAM_H_

#include <array>
#include <atomic>
#include <cstdint>

#include "idem/stats.h"

namespace idem::engine {

class LatencyHistogram {
 public:
  void Record(uint64_t nanos);
  LatencySummary Summary() const;

 private:
  static constexpr int kSubBits = 3;
  static constexpr int kBuckets = 64 << kSubBits;
  static int BucketOf(uint64_t nanos);
  static uint64_t UpperBoundOf(int bucket);

  std::array<std::atomic<uint64_t>, kBuckets> counts_{};
  std::atomic<uint64_t> max_{0};
};

}  // namespace idem::engine

#endif  // IDEM_ENGINE_LATENCY_HISTOGRAM_H_
