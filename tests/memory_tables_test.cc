#include "engine/memory_tables.h"

#include <string>

#include "tests/test_util.h"

namespace idem::engine {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1000);

TEST(RecentCommitsTest, FindsLiveEntriesAndEvictsOldestFirst) {
  RecentCommits cache(2 * KeyLocks::kStripes);  // two entries per stripe
  cache.Put(0, "a", 1, kNow + absl::Hours(1), std::nullopt, "ra");
  cache.Put(0, "b", 2, kNow + absl::Hours(1), std::nullopt, "rb");
  ASSERT_NE(cache.Find(0, "a", kNow), nullptr);
  EXPECT_EQ(cache.Find(0, "a", kNow)->result, "ra");
  cache.Put(0, "c", 3, kNow + absl::Hours(1), 77, "rc");
  EXPECT_EQ(cache.Find(0, "a", kNow), nullptr) << "the oldest entry is evicted";
  ASSERT_NE(cache.Find(0, "b", kNow), nullptr);
  ASSERT_NE(cache.Find(0, "c", kNow), nullptr);
  EXPECT_EQ(cache.Find(0, "c", kNow)->fingerprint, 77u);
  EXPECT_EQ(cache.Find(0, "c", kNow + absl::Hours(1)), nullptr) << "expired entries are not returned";
  cache.Put(0, "b", 4, kNow + absl::Hours(2), std::nullopt, "rb2");  // update in place, no eviction
  EXPECT_EQ(cache.Find(0, "b", kNow)->token, 4u);
  ASSERT_NE(cache.Find(0, "c", kNow), nullptr);
  EXPECT_EQ(cache.Find(1, "b", kNow), nullptr) << "stripes are independent";
}

TEST(RecentCommitsTest, DisabledCacheFindsNothing) {
  RecentCommits cache(0);
  EXPECT_FALSE(cache.enabled());
  cache.Put(0, "a", 1, kNow + absl::Hours(1), std::nullopt, "");
  EXPECT_EQ(cache.Find(0, "a", kNow), nullptr);
}

TEST(LeaseTableTest, PutFindEraseAndSweepOfAbandonedLeases) {
  LeaseTable leases;
  // Deadlines are what callers see; ends_at (monotonic) is what decides.
  const absl::Duration mono = absl::Hours(5);
  leases.Put(3, "x", Lease{5, kNow + absl::Seconds(30), mono + absl::Seconds(30), std::nullopt}, mono);
  ASSERT_NE(leases.Find(3, "x"), nullptr);
  EXPECT_EQ(leases.Find(3, "x")->token, 5u);
  leases.Erase(3, "x");
  EXPECT_EQ(leases.Find(3, "x"), nullptr);
  // Abandoned leases are swept as new ones arrive, so the table stays bounded by the live ones.
  for (int i = 0; i < 200; ++i) {
    leases.Put(3, std::to_string(i), Lease{1, kNow + absl::Seconds(1), mono + absl::Seconds(1), std::nullopt}, mono);
  }
  const absl::Duration later = mono + absl::Minutes(1);
  for (int i = 0; i < 200; ++i) {
    leases.Put(3, "live-" + std::to_string(i), Lease{1, kNow, later + absl::Minutes(1), std::nullopt}, later);
  }
  EXPECT_LT(leases.Size(3), 300u);
  EXPECT_NE(leases.Find(3, "live-7"), nullptr);
}

}  // namespace
}  // namespace idem::engine
