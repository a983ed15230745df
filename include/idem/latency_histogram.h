// idem/latency_histogram.h — the latency histogram behind Stats and ProcessorStats, for integrators who
// time their own steps the same way.
//
// Lock-free and log-linear: 8 sub-buckets per power of two of nanoseconds (relative error below 1/8),
// recorded with relaxed atomic increments so that concurrent operations never wait on it.
//
// Thread safety: Record and Summary may be called from any number of threads at once; a Summary taken
// under load may be a few recordings apart between its fields. Not copyable.
#ifndef IDEM_LATENCY_HISTOGRAM_H_
#define IDEM_LATENCY_HISTOGRAM_H_

#include <array>
#include <atomic>
#include <cstdint>

#include "idem/stats.h"

namespace idem {

class LatencyHistogram {
 public:
  LatencyHistogram() = default;
  LatencyHistogram(const LatencyHistogram&) = delete;
  LatencyHistogram& operator=(const LatencyHistogram&) = delete;

  void Record(uint64_t nanos);
  LatencySummary Summary() const;

 private:
  static constexpr int kSubBits = 3;
  static constexpr int kBuckets = 64 << kSubBits;
  static int BucketOf(uint64_t nanos);
  static uint64_t UpperBoundOf(int bucket);

  std::array<std::atomic<uint64_t>, kBuckets> counts_{};
  std::atomic<uint64_t> max_{0};
  std::atomic<uint64_t> sum_nanos_{0};
};

}  // namespace idem

#endif  // IDEM_LATENCY_HISTOGRAM_H_
