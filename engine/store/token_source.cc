#include "engine/store/token_source.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"

namespace idem::engine {

TokenSource::TokenSource(rocksdb::DB* db, MetadataLocation where, StoreMetadata metadata, uint64_t floor,
                         uint64_t limit)
    : db_(db),
      where_(std::move(where)),
      max_(limit == 0 ? std::numeric_limits<uint64_t>::max() : limit - 1),
      metadata_(std::move(metadata)) {
  // A mark at the end of the token space (or at the limit) has no next token.
  const uint64_t base = std::max(metadata_.token_high_water, floor);
  exhausted_ = base >= max_;
  next_.store(exhausted_ ? max_ : base + 1);
  // Above the persisted mark (a floor that jumped), the first Next() persists a mark that covers it.
  covered_.store(metadata_.token_high_water);
  first_ = exhausted_ ? base : base + 1;
}

absl::StatusOr<uint64_t> TokenSource::Next() {
  const uint64_t kMax = max_;
  // A token at or below the persisted mark may be handed out at once; the last token of the space
  // goes through the slow path, which hands it out exactly once.
  uint64_t token = next_.load(std::memory_order_relaxed);
  while (token != kMax && token <= covered_.load(std::memory_order_acquire)) {
    if (next_.compare_exchange_weak(token, token + 1, std::memory_order_relaxed)) return token;
  }
  return NextSlow();
}

absl::StatusOr<uint64_t> TokenSource::NextSlow() {
  const uint64_t kMax = max_;
  util::MutexLock lock(&mu_);
  for (;;) {
    if (exhausted_) {
      return absl::FailedPreconditionError(absl::StrCat("idem store's fencing tokens are used up (high-water mark ",
                                                        metadata_.token_high_water,
                                                        "): no token can be issued that was not issued before"));
    }
    uint64_t token = next_.load(std::memory_order_relaxed);
    if (token > metadata_.token_high_water) {
      StoreMetadata raised = metadata_;
      // From the token wanted, not from the old mark: a floor may have moved next_ far above it.
      const uint64_t base = std::max(metadata_.token_high_water, token - 1);
      raised.token_high_water = base > kMax - kBlock ? kMax : base + kBlock;
      if (absl::Status s = SaveMetadata(db_, where_, raised); !s.ok()) {
        return absl::UnavailableError(absl::StrCat("persisting the token high-water mark: ", s.message()));
      }
      metadata_ = std::move(raised);
      covered_.store(metadata_.token_high_water, std::memory_order_release);
    }
    if (token == kMax) {  // covered (the mark is kMax now), issued once, then never again
      exhausted_ = true;
      return token;
    }
    if (next_.compare_exchange_weak(token, token + 1, std::memory_order_relaxed)) return token;
  }
}
}  // namespace idem::engine
