// Striped per-ID mutexes: operations on one ID are serialized (read, decide, write), operations on
// different IDs mostly run in parallel. Cross-process exclusion is RocksDB's LOCK file: only one process
// can open the DB for writing.
#ifndef IDEM_ENGINE_STORE_KEY_LOCKS_H_
#define IDEM_ENGINE_STORE_KEY_LOCKS_H_

#include <algorithm>
#include <array>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "engine/records/record_key.h"
#include "util/sync.h"

namespace idem::engine {

// An event ID with its hash, computed once per call: the stripe, the lease table and the recent-commit
// cache all index by it. `id` is the caller's bytes (not owned).
struct IdKey {
  std::string_view id;
  uint64_t hash = 0;
  size_t stripe = 0;
};

class KeyLocks {
 public:
  static constexpr size_t kStripes = 1024;
  static_assert((kStripes & (kStripes - 1)) == 0, "a power of two: the stripe is the hash's top bits");

  static IdKey KeyOf(std::string_view id) {
    const uint64_t hash = IdHash(id);  // the hash in the ID's key too (engine/record_key.h)
    // The top bits pick the stripe; the tables inside a stripe index by the low ones.
    return IdKey{id, hash, static_cast<size_t>(hash >> (64 - kStripeBits))};
  }
  util::Mutex* At(size_t stripe) { return &stripes_[stripe].mu; }
  // Signalled when an ID of the stripe is committed or released (ReserveOptions::wait sleeps on it).
  std::condition_variable& Changed(size_t stripe) { return stripes_[stripe].changed; }

  // Holds the stripes of many IDs, taken in ascending order so that batches never deadlock.
  class Group {
   public:
    Group(KeyLocks* locks, std::vector<size_t> stripes) : locks_(locks), stripes_(std::move(stripes)) {
      std::sort(stripes_.begin(), stripes_.end());
      stripes_.erase(std::unique(stripes_.begin(), stripes_.end()), stripes_.end());
      for (size_t s : stripes_) locks_->At(s)->Lock();
    }
    ~Group() {
      for (auto it = stripes_.rbegin(); it != stripes_.rend(); ++it) locks_->At(*it)->Unlock();
    }
    Group(const Group&) = delete;
    Group& operator=(const Group&) = delete;

   private:
    KeyLocks* locks_;
    std::vector<size_t> stripes_;
  };

 private:
  static constexpr int kStripeBits = 10;
  static_assert(size_t{1} << kStripeBits == kStripes);
  struct alignas(64) Stripe {
    util::Mutex mu;
    std::condition_variable changed;
  };
  std::array<Stripe, kStripes> stripes_;
};

}  // namespace idem::engine

#endif  // IDEM_ENGINE_STORE_KEY_LOCKS_H_
