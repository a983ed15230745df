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
  Insert(key, lease, monotonic_now);
}

void LeaseTable::Insert(const IdKey& key, const Lease& lease, absl::Duration monotonic_now) {
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

bool LeaseTable::Erase(const IdKey& key) {
  Stripe& s = stripes_[key.stripe];
  auto it = s.index.find(key.hash);
  if (it == s.index.end()) return false;
  for (uint32_t at = it->second; at != kNone; at = s.entries[at].next) {
    if (s.entries[at].id == key.id) {
      Unlink(s, at);
      return true;
    }
  }
  return false;
}

RecentCommits::RecentCommits(size_t capacity)
    : sets_per_stripe_(capacity == 0 ? 0 : (capacity + KeyLocks::kStripes * kWays - 1) / (KeyLocks::kStripes * kWays)),
      sets_(sets_per_stripe_ * KeyLocks::kStripes) {}

const RecentCommit* RecentCommits::Find(const IdKey& key, absl::Time now) const {
  if (sets_per_stripe_ == 0) return nullptr;
  for (const Slot& slot : SetOf(key).ways) {
    if (slot.used && slot.hash == key.hash && slot.id == key.id) {
      return slot.commit.deadline > now ? &slot.commit : nullptr;
    }
  }
  return nullptr;
}

void RecentCommits::Erase(const IdKey& key) {
  if (sets_per_stripe_ == 0) return;
  Set& set = SetOf(key);
  for (size_t way = 0; way < kWays; ++way) {
    Slot& slot = set.ways[way];
    if (slot.used && slot.hash == key.hash && slot.id == key.id) {
      slot.used = false;
      set.older = static_cast<uint8_t>(way);  // a free slot is filled first
    }
  }
}

void RecentCommits::Put(const IdKey& key, uint64_t token, absl::Time deadline, std::optional<uint64_t> fingerprint,
                        std::string_view result) {
  if (sets_per_stripe_ == 0) return;
  Set& set = SetOf(key);
  size_t way = set.older;
  for (size_t w = 0; w < kWays; ++w) {
    if (set.ways[w].used && set.ways[w].hash == key.hash && set.ways[w].id == key.id) way = w;  // update in place
  }
  if (way == set.older) set.older = static_cast<uint8_t>((way + 1) % kWays);
  Slot& slot = set.ways[way];
  slot.id.assign(key.id.data(), key.id.size());
  slot.hash = key.hash;
  slot.used = true;
  slot.commit.token = token;
  slot.commit.deadline = deadline;
  slot.commit.fingerprint = fingerprint;
  slot.commit.result.assign(result.data(), result.size());
}

}  // namespace idem::engine
