#include "engine/memory_tables.h"

#include "engine/status_util.h"

namespace idem::engine {

Lease* LeaseTable::Find(size_t shard, std::string_view id) {
  auto& leases = shards_[shard].leases;
  auto it = leases.find(ToAbsl(id));
  return it == leases.end() ? nullptr : &it->second;
}

void LeaseTable::Put(size_t shard, std::string_view id, const Lease& lease, absl::Time now) {
  Shard& s = shards_[shard];
  // Leases abandoned without Commit/Release (the handler crashed, the caller forgot) are swept
  // now and then, so the table stays bounded by the live leases.
  if (++s.puts_since_sweep >= 64 && s.leases.size() >= 64) {
    s.puts_since_sweep = 0;
    absl::erase_if(s.leases, [now](const auto& entry) { return entry.second.deadline <= now; });
  }
  s.leases.insert_or_assign(std::string(id), lease);
}

void LeaseTable::Erase(size_t shard, std::string_view id) { shards_[shard].leases.erase(ToAbsl(id)); }

RecentCommits::RecentCommits(size_t capacity)
    : per_shard_(capacity == 0 ? 0 : (capacity + KeyLocks::kStripes - 1) / KeyLocks::kStripes),
      shards_(per_shard_ == 0 ? 0 : KeyLocks::kStripes) {}

const RecentCommit* RecentCommits::Find(size_t shard, std::string_view id, absl::Time now) {
  if (per_shard_ == 0) return nullptr;
  auto& entries = shards_[shard].entries;
  auto it = entries.find(ToAbsl(id));
  if (it == entries.end() || it->second.deadline <= now) return nullptr;
  return &it->second;
}

void RecentCommits::Put(size_t shard, std::string_view id, RecentCommit commit) {
  if (per_shard_ == 0) return;
  Shard& s = shards_[shard];
  auto [it, inserted] = s.entries.insert_or_assign(std::string(id), std::move(commit));
  if (!inserted) return;
  s.order.push_back(it->first);
  while (s.order.size() > per_shard_) {
    s.entries.erase(s.order.front());
    s.order.pop_front();
  }
}

}  // namespace idem::engine
