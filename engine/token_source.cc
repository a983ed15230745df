#include "engine/token_source.h"

#include <string>

#include "engine/record.h"
#include "engine/status_util.h"

namespace idem::engine {

absl::StatusOr<std::unique_ptr<TokenSource>> TokenSource::Load(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf,
                                                                const rocksdb::WriteOptions& write_options) {
  std::string value;
  uint64_t high_water = 0;
  const rocksdb::Status s = db->Get(rocksdb::ReadOptions(), cf, rocksdb::Slice(), &value);
  if (s.ok()) {
    absl::StatusOr<uint64_t> decoded = DecodeMeta(value);
    if (!decoded.ok()) return decoded.status();
    high_water = *decoded;
  } else if (!s.IsNotFound()) {
    return FromRocks(s, "reading idem metadata");
  }
  return std::unique_ptr<TokenSource>(new TokenSource(db, cf, write_options, high_water));
}

TokenSource::TokenSource(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf, const rocksdb::WriteOptions& write_options,
                         uint64_t high_water)
    : db_(db), cf_(cf), write_options_(write_options), next_(high_water + 1), limit_(high_water) {}

absl::StatusOr<uint64_t> TokenSource::Next() {
  MutexLock lock(&mu_);
  if (next_ > limit_) {
    const uint64_t new_limit = limit_ + kBlock;
    // Always fsynced, whatever the store's durability mode: one fsync per block keeps tokens from being
    // handed out twice even when a power failure drops the WAL's unsynced tail (with sync = false the
    // writes that used the lost tokens are lost too, but a downstream system may have seen the tokens).
    rocksdb::WriteOptions durable = write_options_;
    durable.sync = true;
    const rocksdb::Status s = db_->Put(durable, cf_, rocksdb::Slice(), EncodeMeta(new_limit));
    if (!s.ok()) return FromRocks(s, "persisting the token high-water mark");
    limit_ = new_limit;
  }
  return next_++;
}

uint64_t TokenSource::high_water() const {
  MutexLock lock(&mu_);
  return limit_;
}

}  // namespace idem::engine
