// Fencing tokens: strictly increasing per store, never reused, across restarts too.
//
// Tokens are handed out from blocks: before the first token of a block is returned, the block's upper
// end is written to the store's metadata (engine/store_metadata.h), which no expiry can remove. The WAL
// keeps writes in order, so any record carrying a token is recovered only together with the high-water
// mark that covers it; after a restart the next block starts above every token that can have survived.
// That write is always fsynced, so that a power failure (which can drop the WAL's unsynced tail when
// sync = false) cannot bring back a lower mark after tokens of the block were seen downstream. Cost: one
// small fsynced write per kBlock tokens.
//
// The token space ends at 2^64 - 1: the last token is issued, then Next() refuses; it never wraps to 0 or
// to a token already seen.
//
// Thread safety: Next() may be called concurrently.
#ifndef IDEM_ENGINE_STORE_TOKEN_SOURCE_H_
#define IDEM_ENGINE_STORE_TOKEN_SOURCE_H_

#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "engine/records/store_metadata.h"
#include "rocksdb/db.h"
#include "util/sync.h"

namespace idem::engine {

class TokenSource {
 public:
  static constexpr uint64_t kBlock = 1 << 16;

  // Continues after `metadata.token_high_water` and after `floor` (whichever is higher), persisting
  // raised marks to `where` in `db`.
  // Issues tokens below `limit` only (0: the whole token space).
  TokenSource(rocksdb::DB* db, MetadataLocation where, StoreMetadata metadata, uint64_t floor = 0, uint64_t limit = 0);

  // kUnavailable when the high-water mark could not be written (no token is issued then);
  // kFailedPrecondition once the token space is used up.
  absl::StatusOr<uint64_t> Next();

  // The first token this source can issue: above every token issued before it was made.
  uint64_t first() const { return first_; }

 private:
  rocksdb::DB* const db_;
  const MetadataLocation where_;
  const uint64_t max_;  // the last token that may be issued
  uint64_t first_ = 0;

  // Raises the mark (or reports exhaustion) when the fast path in Next() cannot hand out a token.
  absl::StatusOr<uint64_t> NextSlow();

  // Tokens up to covered_ are handed out with a compare-and-swap on next_; raising the mark takes mu_.
  std::atomic<uint64_t> next_{0};
  std::atomic<uint64_t> covered_{0};  // the persisted mark: every token up to it may be issued

  mutable util::Mutex mu_;
  StoreMetadata metadata_ ABSL_GUARDED_BY(mu_);  // as persisted: its mark covers every token issued
  bool exhausted_ ABSL_GUARDED_BY(mu_);
};

}  // namespace idem::engine

#endif  // IDEM_ENGINE_STORE_TOKEN_SOURCE_H_
