// Fencing tokens: strictly increasing per store, never reused, across restarts too.
//
// Tokens are handed out from blocks: before the first token of a block is returned, the block's upper
// end is written to the metadata record (key ""). The WAL keeps writes in order, so any record carrying
// a token is recovered only together with the high-water mark that covers it; after a restart the next
// block starts above every token that can have survived. That write is always fsynced, so that a power
// failure (which can drop the WAL's unsynced tail when sync = false) cannot bring back a lower mark after
// tokens of the block were seen downstream. Cost: one small fsynced write per kBlock tokens.
//
// Thread safety: Next() may be called concurrently.
#ifndef IDEM_ENGINE_TOKEN_SOURCE_H_
#define IDEM_ENGINE_TOKEN_SOURCE_H_

#include <cstdint>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "engine/sync.h"
#include "rocksdb/db.h"

namespace idem::engine {

class TokenSource {
 public:
  static constexpr uint64_t kBlock = 1 << 16;

  // Reads the high-water mark from `cf` (DataLoss if the metadata record is corrupt).
  static absl::StatusOr<std::unique_ptr<TokenSource>> Load(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf,
                                                           const rocksdb::WriteOptions& write_options);

  // kUnavailable when the high-water mark could not be written (no token is issued then).
  absl::StatusOr<uint64_t> Next();

  uint64_t high_water() const;

 private:
  TokenSource(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf, const rocksdb::WriteOptions& write_options,
              uint64_t high_water);

  rocksdb::DB* const db_;
  rocksdb::ColumnFamilyHandle* const cf_;
  const rocksdb::WriteOptions write_options_;

  mutable Mutex mu_;
  uint64_t next_ ABSL_GUARDED_BY(mu_);
  uint64_t limit_ ABSL_GUARDED_BY(mu_);  // highest token covered by the persisted high-water mark
};

}  // namespace idem::engine

#endif  // IDEM_ENGINE_TOKEN_SOURCE_H_
