// How an event ID becomes a key of the records column family, and back.
//
//   plain  (layout 1, stores made before it was versioned):  key := id
//   hashed (layout 2, every store made since):                key := fixed64-be(IdHash(id)) id
//
// The hashed layout puts a uniform 8-byte hash in front of the ID so that the hash-bucketed memtable
// (engine/column_families.cc: HashSkipList bucketed by the key's first 8 bytes) spreads IDs evenly
// whatever they look like: "order-000001", "order-000002"... share long prefixes, and bucketed by
// their own first bytes they would all land in one bucket. The layout is part of the store's metadata
// (engine/store_metadata.h), fixed when the store is created; a plain store keeps its layout and still
// opens (its keys are bucketed by their own first bytes: correct, just less even).
//
// IdHash is XXH3-64 (xxhash 0.8's frozen XXH3_64bits, seed 0): it is persisted in keys, so it must
// never change for a layout. The store also uses it for its stripes and in-memory tables: one hash of
// the ID per call.
//
// Thread safety: functions of their arguments.
#ifndef IDEM_ENGINE_RECORDS_RECORD_KEY_H_
#define IDEM_ENGINE_RECORDS_RECORD_KEY_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "rocksdb/slice.h"

namespace idem::engine {

enum class KeyLayout : uint8_t { kPlain = 1, kHashed = 2 };  // persisted: never renumber

inline constexpr size_t kKeyHashBytes = 8;

uint64_t IdHash(std::string_view id);

// The key of one ID, built without allocating for IDs up to kInline bytes.
class RecordKey {
 public:
  RecordKey(KeyLayout layout, std::string_view id, uint64_t hash);
  RecordKey(KeyLayout layout, std::string_view id) : RecordKey(layout, id, IdHash(id)) {}
  RecordKey(const RecordKey&) = delete;
  RecordKey& operator=(const RecordKey&) = delete;

  rocksdb::Slice slice() const { return rocksdb::Slice(data_, size_); }
  std::string_view view() const { return std::string_view(data_, size_); }

 private:
  static constexpr size_t kInline = 64;
  char inline_[kKeyHashBytes + kInline];
  std::string heap_;
  const char* data_;
  size_t size_;
};

// The ID a stored key holds under `layout`; nullopt when the key cannot be one of its records (too
// short, or a hash that does not match: written by something else, or damaged).
std::optional<std::string_view> IdOfKey(KeyLayout layout, std::string_view key);

// For tools that see keys without knowing the store's layout (a WAL being recovered): the ID of a key
// that is a valid hashed-layout key, else the key itself (a plain store's ID).
std::string_view IdForDisplay(std::string_view key);

}  // namespace idem::engine

#endif  // IDEM_ENGINE_RECORDS_RECORD_KEY_H_
