#include "idem/latency_histogram.h"

#include "tests/test_util.h"

namespace idem::engine {
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

TEST(LatencyHistogramTest, EmptyAndTinyValues) {
  LatencyHistogram h;
  EXPECT_EQ(h.Summary().count, 0u);
  h.Record(0);
  h.Record(3);
  EXPECT_EQ(h.Summary().max, absl::Nanoseconds(3));
  EXPECT_LE(h.Summary().p50, absl::Nanoseconds(3));
}

}  // namespace
}  // namespace idem::engine
