#include "engine/token_source.h"

#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"

namespace idem::engine {

TokenSource::TokenSource(rocksdb::DB* db, MetadataLocation where, StoreMetadata metadata)
    : db_(db), where_(std::move(where)), metadata_(std::move(metadata)) {
  // A mark at the end of the token space has no next token: +1 would wrap to 0.
  exhausted_ = metadata_.token_high_water == std::numeric_limits<uint64_t>::max();
  next_ = exhausted_ ? 0 : metadata_.token_high_water + 1;
  first_ = exhausted_ ? metadata_.token_high_water : next_;
}

absl::StatusOr<uint64_t> TokenSource::Next() {
  MutexLock lock(&mu_);
  if (exhausted_) {
    return absl::FailedPreconditionError(absl::StrCat("idem store's fencing tokens are used up (high-water mark ",
                                                      metadata_.token_high_water,
                                                      "): no token can be issued that was not issued before"));
  }
  if (next_ > metadata_.token_high_water) {
    constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
    StoreMetadata raised = metadata_;
    raised.token_high_water = metadata_.token_high_water > kMax - kBlock ? kMax : metadata_.token_high_water + kBlock;
    if (absl::Status s = SaveMetadata(db_, where_, raised); !s.ok()) {
      return absl::UnavailableError(absl::StrCat("persisting the token high-water mark: ", s.message()));
    }
    metadata_ = std::move(raised);
  }
  const uint64_t token = next_;
  if (token == std::numeric_limits<uint64_t>::max()) {
    exhausted_ = true;
  } else {
    ++next_;
  }
  return token;
}
}  // namespace idem::engine
