#include "engine/memory_tables.h"

#include "engine/status_util.h"

namespace idem::engine {

Lease* LeaseTable::Find(size_t stripe, std::string_view id) {
  auto& leases = stripes_[stripe].leases;
  auto it = leases.find(ToAbsl(id));
  return it == leases.end() ? nullptr : &it->second;
}

void LeaseTable::Put(size_t stripe, std::string_view id, const Lease& lease, absl::Duration monotonic_now) {
  Stripe& s = stripes_[stripe];
  // Leases abandoned without Commit/Release (the handler crashed, the caller forgot) are swept
  // now and then, so the table stays bounded by the live leases.
  if (++s.puts_since_sweep >= 64 && s.leases.size() >= 64) {
    s.puts_since_sweep = 0;
    absl::erase_if(s.leases, [monotonic_now](const auto& entry) { return entry.second.ends_at <= monotonic_now; });
  }
  s.leases.insert_or_assign(std::string(id), lease);
}

void LeaseTable::Erase(size_t stripe, std::string_view id) { stripes_[stripe].leases.erase(ToAbsl(id)); }

RecentCommits::RecentCommits(size_t capacity)
    : per_stripe_(capacity == 0 ? 0 : (capacity + KeyLocks::kStripes - 1) / KeyLocks::kStripes),
      stripes_(per_stripe_ == 0 ? 0 : KeyLocks::kStripes) {}

uint64_t RecentCommits::HashOf(std::string_view id) { return std::hash<std::string_view>{}(id)*0x9E3779B97F4A7C15ULL; }

const RecentCommit* RecentCommits::Find(size_t stripe, std::string_view id, absl::Time now) const {
  if (per_stripe_ == 0) return nullptr;
  const Stripe& s = stripes_[stripe];
  auto it = s.index.find(HashOf(id));
  if (it == s.index.end()) return nullptr;
  const Slot& slot = s.ring[it->second];
  if (slot.id != id || slot.commit.deadline <= now) return nullptr;
  return &slot.commit;
}

void RecentCommits::Erase(size_t stripe, std::string_view id) {
  if (per_stripe_ == 0) return;
  Stripe& s = stripes_[stripe];
  auto it = s.index.find(HashOf(id));
  if (it == s.index.end() || s.ring[it->second].id != id) return;
  s.ring[it->second].commit.deadline = absl::InfinitePast();  // the slot stays in the ring, never found
  s.index.erase(it);
}

void RecentCommits::Put(size_t stripe, std::string_view id, uint64_t token, absl::Time deadline,
                        std::optional<uint64_t> fingerprint, std::string_view result) {
  if (per_stripe_ == 0) return;
  Stripe& s = stripes_[stripe];
  const uint64_t hash = HashOf(id);
  uint32_t slot_index;
  auto it = s.index.find(hash);
  if (it != s.index.end() && s.ring[it->second].id == id) {
    slot_index = it->second;  // the same ID again: update in place
  } else {
    if (s.ring.size() < per_stripe_) {
      s.ring.emplace_back();
      slot_index = static_cast<uint32_t>(s.ring.size() - 1);
    } else {
      slot_index = static_cast<uint32_t>(s.next);
      s.next = (s.next + 1) % per_stripe_;
      auto victim = s.index.find(HashOf(s.ring[slot_index].id));
      if (victim != s.index.end() && victim->second == slot_index) s.index.erase(victim);
    }
    s.index.insert_or_assign(hash, slot_index);
  }
  Slot& slot = s.ring[slot_index];
  slot.id.assign(id.data(), id.size());
  slot.commit.token = token;
  slot.commit.deadline = deadline;
  slot.commit.fingerprint = fingerprint;
  slot.commit.result.assign(result.data(), result.size());
}

}  // namespace idem::engine
