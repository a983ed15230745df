#include "engine/store/memory_tables.h"

#include <map>
#include <string>
#include <vector>

#include "tests/support/test_util.h"

namespace idem::engine {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1000);

// `id` as the tables see it, placed in stripe `stripe` (tests pick stripes; the store derives them).
IdKey Key(size_t stripe, std::string_view id) { return IdKey{id, KeyLocks::KeyOf(id).hash, stripe}; }

TEST(RecentCommitsTest, FindsLiveEntriesAndEvictsOldestFirst) {
  RecentCommits cache(2 * KeyLocks::kStripes);  // two entries per stripe
  cache.Put(Key(0, "a"), 1, kNow + absl::Hours(1), std::nullopt, "ra");
  cache.Put(Key(0, "b"), 2, kNow + absl::Hours(1), std::nullopt, "rb");
  ASSERT_NE(cache.Find(Key(0, "a"), kNow), nullptr);
  EXPECT_EQ(cache.Find(Key(0, "a"), kNow)->result, "ra");
  cache.Put(Key(0, "c"), 3, kNow + absl::Hours(1), 77, "rc");
  EXPECT_EQ(cache.Find(Key(0, "a"), kNow), nullptr) << "the oldest entry is evicted";
  ASSERT_NE(cache.Find(Key(0, "b"), kNow), nullptr);
  ASSERT_NE(cache.Find(Key(0, "c"), kNow), nullptr);
  EXPECT_EQ(cache.Find(Key(0, "c"), kNow)->fingerprint, 77u);
  EXPECT_EQ(cache.Find(Key(0, "c"), kNow + absl::Hours(1)), nullptr) << "expired entries are not returned";
  cache.Put(Key(0, "b"), 4, kNow + absl::Hours(2), std::nullopt, "rb2");  // update in place, no eviction
  EXPECT_EQ(cache.Find(Key(0, "b"), kNow)->token, 4u);
  ASSERT_NE(cache.Find(Key(0, "c"), kNow), nullptr);
  EXPECT_EQ(cache.Find(Key(1, "b"), kNow), nullptr) << "stripes are independent";
}

TEST(RecentCommitsTest, DisabledCacheFindsNothing) {
  RecentCommits cache(0);
  EXPECT_FALSE(cache.enabled());
  cache.Put(Key(0, "a"), 1, kNow + absl::Hours(1), std::nullopt, "");
  EXPECT_EQ(cache.Find(Key(0, "a"), kNow), nullptr);
}

TEST(LeaseTableTest, PutFindEraseAndSweepOfAbandonedLeases) {
  LeaseTable leases;
  // Deadlines are what callers see; ends_at (monotonic) is what decides.
  const absl::Duration mono = absl::Hours(5);
  leases.Put(Key(3, "x"), Lease{5, kNow + absl::Seconds(30), mono + absl::Seconds(30), std::nullopt}, mono);
  ASSERT_NE(leases.Find(Key(3, "x")), nullptr);
  EXPECT_EQ(leases.Find(Key(3, "x"))->token, 5u);
  leases.Erase(Key(3, "x"));
  EXPECT_EQ(leases.Find(Key(3, "x")), nullptr);
  // Abandoned leases are swept as new ones arrive, so the table stays bounded by the live ones.
  for (int i = 0; i < 200; ++i) {
    const std::string id = std::to_string(i);
    leases.Put(Key(3, id), Lease{1, kNow + absl::Seconds(1), mono + absl::Seconds(1), std::nullopt}, mono);
  }
  const absl::Duration later = mono + absl::Minutes(1);
  for (int i = 0; i < 200; ++i) {
    const std::string id = "live-" + std::to_string(i);
    leases.Put(Key(3, id), Lease{1, kNow, later + absl::Minutes(1), std::nullopt}, later);
  }
  EXPECT_LT(leases.Size(3), 300u);
  EXPECT_NE(leases.Find(Key(3, "live-7")), nullptr);
}

TEST(LeaseTableTest, IdsSharingAHashAreKeptApart) {
  LeaseTable leases;
  const absl::Duration mono = absl::Hours(5);
  const IdKey a{"a", 42, 1}, b{"b", 42, 1}, c{"c", 42, 1};
  leases.Put(a, Lease{1, kNow, mono + absl::Seconds(30), std::nullopt}, mono);
  leases.Put(b, Lease{2, kNow, mono + absl::Seconds(30), std::nullopt}, mono);
  leases.Put(c, Lease{3, kNow, mono + absl::Seconds(30), std::nullopt}, mono);
  ASSERT_NE(leases.Find(a), nullptr);
  ASSERT_NE(leases.Find(b), nullptr);
  EXPECT_EQ(leases.Find(a)->token, 1u);
  EXPECT_EQ(leases.Find(b)->token, 2u);
  leases.Erase(b);  // from the middle of the chain
  EXPECT_EQ(leases.Find(b), nullptr);
  EXPECT_EQ(leases.Find(a)->token, 1u);
  EXPECT_EQ(leases.Find(c)->token, 3u);
  leases.Erase(c);  // the head
  EXPECT_EQ(leases.Find(a)->token, 1u);
  EXPECT_EQ(leases.Find(c), nullptr);
  leases.Put(b, Lease{4, kNow, mono + absl::Seconds(30), std::nullopt}, mono);  // reuses a freed entry
  EXPECT_EQ(leases.Find(b)->token, 4u);
  EXPECT_EQ(leases.Size(1), 2u);
}

// Random inserts and erases against a reference map, with hashes drawn from a small range so that
// probe runs collide, wrap around the index and shift back on erase.
TEST(LeaseTableTest, AgreesWithAReferenceUnderCollidingHashes) {
  LeaseTable leases;
  std::map<std::string, uint64_t> reference;  // id -> token
  std::vector<std::string> ids;
  for (int i = 0; i < 300; ++i) ids.push_back("id-" + std::to_string(i));
  auto key = [&](const std::string& id) {
    const uint64_t h = std::hash<std::string>{}(id) % 29;  // many IDs per hash, runs that wrap
    return IdKey{id, h, 5};
  };
  const absl::Duration mono = absl::Hours(1);
  uint64_t x = 88172645463325252ULL;
  for (int step = 0; step < 20000; ++step) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    const std::string& id = ids[x % ids.size()];
    if ((x >> 20) % 3 != 0) {
      if (reference.count(id) == 0) {
        leases.Insert(key(id), Lease{static_cast<uint64_t>(step) + 1, kNow, mono + absl::Hours(1), std::nullopt}, mono);
        reference[id] = static_cast<uint64_t>(step) + 1;
      }
    } else {
      EXPECT_EQ(leases.Erase(key(id)), reference.erase(id) > 0) << "step " << step;
    }
    if (step % 97 == 0) {
      for (const std::string& probe : ids) {
        Lease* found = leases.Find(key(probe));
        auto it = reference.find(probe);
        ASSERT_EQ(found != nullptr, it != reference.end()) << probe << " at step " << step;
        if (found != nullptr) {
          EXPECT_EQ(found->token, it->second) << probe;
        }
      }
    }
  }
  EXPECT_EQ(leases.Size(5), reference.size());
}

TEST(RecentCommitsTest, IdsSharingAHashNeverAnswerForEachOther) {
  RecentCommits cache(2 * KeyLocks::kStripes);
  const IdKey a{"a", 7, 0}, b{"b", 7, 0}, c{"c", 7, 0};
  cache.Put(a, 1, kNow + absl::Hours(1), std::nullopt, "ra");
  cache.Put(b, 2, kNow + absl::Hours(1), std::nullopt, "rb");
  ASSERT_NE(cache.Find(a, kNow), nullptr);
  ASSERT_NE(cache.Find(b, kNow), nullptr);
  EXPECT_EQ(cache.Find(a, kNow)->result, "ra");
  EXPECT_EQ(cache.Find(b, kNow)->result, "rb");
  cache.Erase(a);
  EXPECT_EQ(cache.Find(a, kNow), nullptr);
  cache.Put(c, 3, kNow + absl::Hours(1), std::nullopt, "rc");  // fills the erased slot, b stays
  EXPECT_EQ(cache.Find(b, kNow)->result, "rb");
  EXPECT_EQ(cache.Find(c, kNow)->result, "rc");
}

}  // namespace
}  // namespace idem::engine
