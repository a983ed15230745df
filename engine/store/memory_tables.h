// Per-ID state kept in memory, striped exactly like KeyLocks: stripe i is guarded by stripe i's mutex,
// which the caller already holds for the read-decide-write of that ID. No extra lock, no extra
// contention.
//
//  - LeaseTable: this process's live reservations (in both modes of Options::durable_reservations).
//  - RecentCommits: a bounded cache of recently committed IDs with their result and retention end
//    (two-way set-associative, the older of a set replaced first), answering hot duplicates without a
//    RocksDB read. A done record never changes before it
//    expires (Release and Extend refuse it), so the cache cannot go stale; expiry is checked on read.
#ifndef IDEM_ENGINE_STORE_MEMORY_TABLES_H_
#define IDEM_ENGINE_STORE_MEMORY_TABLES_H_

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "engine/store/key_locks.h"

namespace idem::engine {

struct Lease {
  uint64_t token = 0;
  absl::Time deadline;     // as reported to callers (store time)
  absl::Duration ends_at;  // when it really ends, on the monotonic clock (Clock::Monotonic)
  std::optional<uint64_t> fingerprint;
  // A Commit under this lease failed with an unknown outcome: its write may have reached the WAL and
  // show after recovery. Until the lease goes, RocksDB is asked before the lease is believed.
  bool commit_outcome_unknown = false;
};

class LeaseTable {
 public:
  // REQUIRES: the caller holds the KeyLocks stripe `key.stripe` for every call below.
  Lease* Find(const IdKey& key);
  // `monotonic_now`: Clock::Monotonic() now; leases ended by then are purged now and then.
  void Put(const IdKey& key, const Lease& lease, absl::Duration monotonic_now);
  // Put of an ID the table does not hold (the caller just looked): no second lookup.
  void Insert(const IdKey& key, const Lease& lease, absl::Duration monotonic_now);
  // Whether there was a lease.
  bool Erase(const IdKey& key);
  // Live leases of the stripe (for diagnostics).
  size_t Size(size_t stripe) const { return stripes_[stripe].live; }

 private:
  static constexpr uint32_t kNone = UINT32_MAX;
  // Entries live in a per-stripe pool and are reused, keeping their ID string's capacity: a warm table
  // reserves without allocating. They are found through a small open-addressing index (linear
  // probing on the ID's hash, at most half full, backward-shift deletion): a stripe holds a handful of
  // live leases, so a lookup is one or two probes and no general-purpose map is needed.
  struct Entry {
    std::string id;
    Lease lease;
    uint64_t hash = 0;
    uint32_t next_free = kNone;
    bool live = false;
  };
  struct Stripe {
    std::vector<uint32_t> slots;  // 0: empty; else 1 + an index into entries. Size: a power of two.
    std::vector<Entry> entries;
    uint32_t free = kNone;
    uint32_t live = 0;
    uint32_t puts_since_sweep = 0;
  };
  // The slot holding `key`, or kNone.
  static uint32_t SlotOf(const Stripe& s, const IdKey& key);
  // Empties slot `at` (its entry goes back to the pool) and closes the gap behind it.
  static void EraseSlot(Stripe& s, uint32_t at);
  static void Grow(Stripe& s);
  std::vector<Stripe> stripes_ = std::vector<Stripe>(KeyLocks::kStripes);
};

struct RecentCommit {
  uint64_t token = 0;
  absl::Time deadline;
  std::optional<uint64_t> fingerprint;
  std::string result;
};

class RecentCommits {
 public:
  explicit RecentCommits(size_t capacity);
  bool enabled() const { return sets_per_stripe_ > 0; }
  // REQUIRES: the caller holds the KeyLocks stripe `key.stripe`. nullptr when absent or expired at `now`.
  const RecentCommit* Find(const IdKey& key, absl::Time now) const;
  void Put(const IdKey& key, uint64_t token, absl::Time deadline, std::optional<uint64_t> fingerprint,
           std::string_view result);
  // Forgets the ID (it was reserved again, so its old commit no longer describes it).
  void Erase(const IdKey& key);

 private:
  // Two-way set-associative, like a CPU cache: an ID can only be in the two slots of its set (picked by
  // its hash), and a new ID replaces the older of the two. No index to maintain: Put is two string
  // copies, Find one comparison. Slots keep their strings' capacity, so a warm cache inserts without
  // allocating. Redeliveries cluster on recent commits, which is what it keeps.
  static constexpr size_t kWays = 2;
  struct Slot {
    std::string id;
    uint64_t hash = 0;
    bool used = false;
    RecentCommit commit;
  };
  struct Set {
    Slot ways[kWays];
    uint8_t older = 0;  // the way Put replaces next
  };
  const Set& SetOf(const IdKey& key) const {
    return sets_[key.stripe * sets_per_stripe_ + (key.hash % sets_per_stripe_)];
  }
  Set& SetOf(const IdKey& key) { return sets_[key.stripe * sets_per_stripe_ + (key.hash % sets_per_stripe_)]; }
  size_t sets_per_stripe_;
  std::vector<Set> sets_;
};

}  // namespace idem::engine

#endif  // IDEM_ENGINE_STORE_MEMORY_TABLES_H_
