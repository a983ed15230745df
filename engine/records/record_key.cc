#include "engine/records/record_key.h"

#include <cstring>

#define XXH_INLINE_ALL  // header-only: inlined into the hot path, nothing to link
#include <xxhash.h>

namespace idem::engine {
namespace {

void PutBigEndian64(char* p, uint64_t v) {
  const uint64_t big = __builtin_bswap64(v);  // x86-64 and every platform Debian's RocksDB runs on here
  std::memcpy(p, &big, sizeof(big));
}

}  // namespace

uint64_t IdHash(std::string_view id) { return XXH3_64bits(id.data(), id.size()); }

RecordKey::RecordKey(KeyLayout layout, std::string_view id, uint64_t hash) {
  if (layout == KeyLayout::kPlain) {
    data_ = id.data();
    size_ = id.size();
    return;
  }
  size_ = kKeyHashBytes + id.size();
  char* out = inline_;
  if (id.size() > kInline) {
    heap_.resize(size_);
    out = heap_.data();
  }
  PutBigEndian64(out, hash);
  std::memcpy(out + kKeyHashBytes, id.data(), id.size());
  data_ = out;
}

std::optional<std::string_view> IdOfKey(KeyLayout layout, std::string_view key) {
  if (layout == KeyLayout::kPlain) return key.empty() ? std::nullopt : std::optional<std::string_view>(key);
  if (key.size() <= kKeyHashBytes) return std::nullopt;
  const std::string_view id = key.substr(kKeyHashBytes);
  char expected[kKeyHashBytes];
  PutBigEndian64(expected, IdHash(id));
  if (std::memcmp(expected, key.data(), kKeyHashBytes) != 0) return std::nullopt;
  return id;
}

std::string_view IdForDisplay(std::string_view key) { return IdOfKey(KeyLayout::kHashed, key).value_or(key); }

}  // namespace idem::engine
