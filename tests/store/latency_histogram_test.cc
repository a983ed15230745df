#include "idem/latency_histogram.h"

#include "tests/support/test_util.h"

namespace idem {
namespace {

TEST(LatencyHistogramTest, PercentilesWithinBucketPrecision) {
  LatencyHistogram h;
  for (uint64_t i = 1; i <= 10000; ++i) h.Record(i * 100);  // 100 ns .. 1 ms uniformly
  const LatencySummary s = h.Summary();
  EXPECT_EQ(s.count, 10000u);
  auto near = [](absl::Duration got, double want_ns) {
    const double ns = absl::ToDoubleNanoseconds(got);
    return ns >= want_ns * 0.93 && ns <= want_ns * 1.13;
  };
  EXPECT_TRUE(near(s.p50, 500'000)) << s.p50;
  EXPECT_TRUE(near(s.p99, 990'000)) << s.p99;
  EXPECT_TRUE(near(s.p999, 999'000)) << s.p999;
  EXPECT_EQ(s.max, absl::Nanoseconds(1'000'000));
}

// The bound stats.h states: a percentile is at most 12.5 % above the true value and never below it.
TEST(LatencyHistogramTest, PercentileBoundHoldsForEveryMagnitude) {
  for (uint64_t v = 1; v < (uint64_t{1} << 40); v = v * 3 / 2 + 1) {
    for (uint64_t value : {v, v + 1, (v << 1) - 1}) {
      LatencyHistogram h;
      h.Record(value);
      h.Record(value * 1000 + 1000);  // a larger sample, so that p50 is not cut to `max`
      const double p50 = absl::ToDoubleNanoseconds(h.Summary().p50);
      EXPECT_GE(p50, static_cast<double>(value)) << value;
      EXPECT_LE(p50, static_cast<double>(value) * 1.125 + 1) << value;  // +1: the smallest buckets are 1 ns
    }
  }
  LatencyHistogram h;
  h.Record(8192);
  h.Record(1 << 30);
  EXPECT_LE(absl::ToInt64Nanoseconds(h.Summary().p50), 8192 * 1125 / 1000);
}

TEST(LatencyHistogramTest, EmptyAndTinyValues) {
  LatencyHistogram h;
  EXPECT_EQ(h.Summary().count, 0u);
  h.Record(0);
  h.Record(3);
  EXPECT_EQ(h.Summary().max, absl::Nanoseconds(3));
  EXPECT_LE(h.Summary().p50, absl::Nanoseconds(3));
}

}  // namespace
}  // namespace idem
