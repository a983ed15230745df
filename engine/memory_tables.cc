#include "engine/memory_tables.h"

#include "engine/status_util.h"

namespace idem::engine {

Lease* LeaseTable::Find(const IdKey& key) {
  Stripe& s = stripes_[key.stripe];
  auto it = s.index.find(key.hash);
  if (it == s.index.end()) return nullptr;
  for (uint32_t at = it->second; at != kNone; at = s.entries[at].next) {
    if (s.entries[at].id == key.id) return &s.entries[at].lease;
  }
  return nullptr;
}

void LeaseTable::Unlink(Stripe& s, uint32_t at) {
  Entry& entry = s.entries[at];
  auto it = s.index.find(entry.hash);
  if (it->second == at) {
    if (entry.next == kNone) {
      s.index.erase(it);
    } else {
      it->second = entry.next;
    }
  } else {
    uint32_t prev = it->second;
    while (s.entries[prev].next != at) prev = s.entries[prev].next;
    s.entries[prev].next = entry.next;
  }
  entry.live = false;
  entry.next = s.free;
  s.free = at;
  --s.live;
}

void LeaseTable::Put(const IdKey& key, const Lease& lease, absl::Duration monotonic_now) {
  if (Lease* held = Find(key)) {
    *held = lease;
    return;
  }
  Stripe& s = stripes_[key.stripe];
  // Leases abandoned without Commit/Release (the handler crashed, the caller forgot) are swept now and
  // then, so the table stays bounded by the live leases.
  if (++s.puts_since_sweep >= 64 && s.live >= 64) {
    s.puts_since_sweep = 0;
    for (uint32_t at = 0; at < s.entries.size(); ++at) {
      if (s.entries[at].live && s.entries[at].lease.ends_at <= monotonic_now) Unlink(s, at);
    }
  }
  uint32_t at = s.free;
  if (at != kNone) {
    s.free = s.entries[at].next;
  } else {
    at = static_cast<uint32_t>(s.entries.size());
    s.entries.emplace_back();
  }
  Entry& entry = s.entries[at];
  entry.id.assign(key.id.data(), key.id.size());
  entry.lease = lease;
  entry.hash = key.hash;
  entry.live = true;
  auto [it, inserted] = s.index.try_emplace(key.hash, at);
  entry.next = inserted ? kNone : it->second;
  it->second = at;
  ++s.live;
}

void LeaseTable::Erase(const IdKey& key) {
  Stripe& s = stripes_[key.stripe];
  auto it = s.index.find(key.hash);
  if (it == s.index.end()) return;
  for (uint32_t at = it->second; at != kNone; at = s.entries[at].next) {
    if (s.entries[at].id == key.id) return Unlink(s, at);
  }
}

RecentCommits::RecentCommits(size_t capacity)
    : per_stripe_(capacity == 0 ? 0 : (capacity + KeyLocks::kStripes - 1) / KeyLocks::kStripes),
      stripes_(per_stripe_ == 0 ? 0 : KeyLocks::kStripes) {}

const RecentCommit* RecentCommits::Find(const IdKey& key, absl::Time now) const {
  if (per_stripe_ == 0) return nullptr;
  const Stripe& s = stripes_[key.stripe];
  auto it = s.index.find(key.hash);
  if (it == s.index.end()) return nullptr;
  const Slot& slot = s.ring[it->second];
  if (slot.id != key.id || slot.commit.deadline <= now) return nullptr;
  return &slot.commit;
}

void RecentCommits::Erase(const IdKey& key) {
  if (per_stripe_ == 0) return;
  Stripe& s = stripes_[key.stripe];
  auto it = s.index.find(key.hash);
  if (it == s.index.end() || s.ring[it->second].id != key.id) return;
  s.ring[it->second].commit.deadline = absl::InfinitePast();  // the slot stays in the ring, never found
  s.index.erase(it);
}

void RecentCommits::Put(const IdKey& key, uint64_t token, absl::Time deadline, std::optional<uint64_t> fingerprint,
                        std::string_view result) {
  if (per_stripe_ == 0) return;
  Stripe& s = stripes_[key.stripe];
  uint32_t slot_index;
  auto it = s.index.find(key.hash);
  if (it != s.index.end() && s.ring[it->second].id == key.id) {
    slot_index = it->second;  // the same ID again: update in place
  } else {
    if (s.ring.size() < per_stripe_) {
      if (s.ring.capacity() == 0) s.ring.reserve(per_stripe_);
      s.ring.emplace_back();
      slot_index = static_cast<uint32_t>(s.ring.size() - 1);
    } else {
      slot_index = static_cast<uint32_t>(s.next);
      s.next = (s.next + 1) % per_stripe_;
      auto victim = s.index.find(s.ring[slot_index].hash);
      if (victim != s.index.end() && victim->second == slot_index) s.index.erase(victim);
    }
    // A colliding hash replaces the older entry's index: the older one is only a miss from now on.
    s.index.insert_or_assign(key.hash, slot_index);
  }
  Slot& slot = s.ring[slot_index];
  slot.id.assign(key.id.data(), key.id.size());
  slot.hash = key.hash;
  slot.commit.token = token;
  slot.commit.deadline = deadline;
  slot.commit.fingerprint = fingerprint;
  slot.commit.result.assign(result.data(), result.size());
}

}  // namespace idem::engine
