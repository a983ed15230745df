#include "engine/store/memory_tables.h"

#include "util/status_util.h"

namespace idem::engine {

uint32_t LeaseTable::SlotOf(const Stripe& s, const IdKey& key) {
  if (s.slots.empty()) return kNone;
  const uint32_t mask = static_cast<uint32_t>(s.slots.size() - 1);
  for (uint32_t at = static_cast<uint32_t>(key.hash) & mask;; at = (at + 1) & mask) {
    const uint32_t slot = s.slots[at];
    if (slot == 0) return kNone;
    const Entry& entry = s.entries[slot - 1];
    if (entry.hash == key.hash && entry.id == key.id) return at;
  }
}

Lease* LeaseTable::Find(const IdKey& key) {
  Stripe& s = stripes_[key.stripe];
  const uint32_t at = SlotOf(s, key);
  return at == kNone ? nullptr : &s.entries[s.slots[at] - 1].lease;
}

void LeaseTable::Grow(Stripe& s) {
  const size_t size = s.slots.empty() ? 8 : s.slots.size() * 2;
  s.slots.assign(size, 0);
  const uint32_t mask = static_cast<uint32_t>(size - 1);
  for (uint32_t e = 0; e < s.entries.size(); ++e) {
    if (!s.entries[e].live) continue;
    uint32_t at = static_cast<uint32_t>(s.entries[e].hash) & mask;
    while (s.slots[at] != 0) at = (at + 1) & mask;
    s.slots[at] = e + 1;
  }
}

void LeaseTable::EraseSlot(Stripe& s, uint32_t at) {
  const uint32_t e = s.slots[at] - 1;
  s.entries[e].live = false;
  s.entries[e].next_free = s.free;
  s.free = e;
  --s.live;
  // Backward-shift deletion: move later entries of the probe run into the gap when their home slot
  // does not lie (cyclically) between the gap and them, so that no lookup stops early at the hole.
  const uint32_t mask = static_cast<uint32_t>(s.slots.size() - 1);
  uint32_t gap = at;
  for (uint32_t next = (gap + 1) & mask; s.slots[next] != 0; next = (next + 1) & mask) {
    const uint32_t home = static_cast<uint32_t>(s.entries[s.slots[next] - 1].hash) & mask;
    const bool home_between = gap <= next ? (gap < home && home <= next) : (gap < home || home <= next);
    if (!home_between) {
      s.slots[gap] = s.slots[next];
      gap = next;
    }
  }
  s.slots[gap] = 0;
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
    for (uint32_t e = 0; e < s.entries.size(); ++e) {
      const Entry& entry = s.entries[e];
      if (!entry.live || entry.lease.ends_at > monotonic_now) continue;
      EraseSlot(s, SlotOf(s, IdKey{entry.id, entry.hash, key.stripe}));
    }
  }
  if ((s.live + 1) * 2 > s.slots.size()) Grow(s);
  uint32_t e = s.free;
  if (e != kNone) {
    s.free = s.entries[e].next_free;
  } else {
    e = static_cast<uint32_t>(s.entries.size());
    s.entries.emplace_back();
  }
  Entry& entry = s.entries[e];
  entry.id.assign(key.id.data(), key.id.size());
  entry.lease = lease;
  entry.hash = key.hash;
  entry.live = true;
  const uint32_t mask = static_cast<uint32_t>(s.slots.size() - 1);
  uint32_t at = static_cast<uint32_t>(key.hash) & mask;
  while (s.slots[at] != 0) at = (at + 1) & mask;
  s.slots[at] = e + 1;
  ++s.live;
}

bool LeaseTable::Erase(const IdKey& key) {
  Stripe& s = stripes_[key.stripe];
  const uint32_t at = SlotOf(s, key);
  if (at == kNone) return false;
  EraseSlot(s, at);
  return true;
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
