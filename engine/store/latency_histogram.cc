#include "idem/latency_histogram.h"

#include <vector>

namespace idem {

int LatencyHistogram::BucketOf(uint64_t nanos) {
  if (nanos < (1u << kSubBits)) return static_cast<int>(nanos);
  const int top = 63 - __builtin_clzll(nanos);  // index of the highest set bit, >= kSubBits
  const int sub = static_cast<int>((nanos >> (top - kSubBits)) & ((1 << kSubBits) - 1));
  return ((top - kSubBits + 1) << kSubBits) + sub;
}

uint64_t LatencyHistogram::UpperBoundOf(int bucket) {
  if (bucket < (1 << kSubBits)) return static_cast<uint64_t>(bucket);
  const int top = (bucket >> kSubBits) + kSubBits - 1;
  const uint64_t sub = static_cast<uint64_t>(bucket & ((1 << kSubBits) - 1));
  const uint64_t low = (uint64_t{1} << top) | (sub << (top - kSubBits));
  return low + (uint64_t{1} << (top - kSubBits)) - 1;
}

void LatencyHistogram::Record(uint64_t nanos) {
  counts_[BucketOf(nanos)].fetch_add(1, std::memory_order_relaxed);
  sum_nanos_.fetch_add(nanos, std::memory_order_relaxed);
  uint64_t seen = max_.load(std::memory_order_relaxed);
  while (nanos > seen && !max_.compare_exchange_weak(seen, nanos, std::memory_order_relaxed)) {
  }
}

LatencySummary LatencyHistogram::Summary() const {
  std::vector<uint64_t> counts(kBuckets);
  uint64_t total = 0;
  for (int i = 0; i < kBuckets; ++i) {
    counts[i] = counts_[i].load(std::memory_order_relaxed);
    total += counts[i];
  }
  LatencySummary summary;
  summary.count = total;
  if (total == 0) return summary;
  const uint64_t max = max_.load(std::memory_order_relaxed);
  auto percentile = [&](double q) {
    const uint64_t rank = static_cast<uint64_t>(q * static_cast<double>(total - 1)) + 1;
    uint64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += counts[i];
      if (seen >= rank) return absl::Nanoseconds(std::min(UpperBoundOf(i), max));
    }
    return absl::Nanoseconds(max);
  };
  summary.p50 = percentile(0.50);
  summary.p99 = percentile(0.99);
  summary.p999 = percentile(0.999);
  summary.max = absl::Nanoseconds(max);
  summary.sum = absl::Nanoseconds(static_cast<int64_t>(sum_nanos_.load(std::memory_order_relaxed)));
  return summary;
}

}  // namespace idem
