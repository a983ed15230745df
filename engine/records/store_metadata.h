// A store's own metadata: its identity, fixed when the store is created, and the token high-water mark.
//
//   key      := 0x00 "idem" 0x00 <name of the records column family>
//   metadata := 0x4e identity(16 bytes) fixed64-le(token high-water mark) [layout]
//   layout   := u8 KeyLayout (engine/record_key.h); absent: plain (stores made before it existed)
//
// It lives in the DB's default column family, never in the records column family: the records column
// family expires data by design (a compaction filter, or FIFO dropping whole files by age), and the
// mark must outlive every record, or a restarted store would hand out tokens that downstream systems
// have already seen. Open owns the default column family (plain options); Attach checks that the
// caller's has no compaction filter and no FIFO compaction. The key starts with a NUL byte, so it
// cannot collide with ordinary text keys, and effects batches may not write it (engine/effects_check.h).
//
// Stores created before this layout kept the mark under the empty key of the records column family;
// LoadMetadata moves it here.
//
// Thread safety: functions of their arguments; the DB's own thread safety applies.
#ifndef IDEM_ENGINE_RECORDS_STORE_METADATA_H_
#define IDEM_ENGINE_RECORDS_STORE_METADATA_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/records/record_key.h"
#include "rocksdb/db.h"

namespace idem::engine {

inline constexpr std::string_view kMetadataKeyPrefix("\0idem\0", 6);
// A PartitionSet's marker of each partition (engine/partition_set.cc), beside the stores' metadata in
// the default column family: tools tell a partition set's DB by it.
inline constexpr std::string_view kPartitionMarkerPrefix("\0idem\0partition\0", 16);
inline constexpr size_t kIdentityBytes = 16;

struct StoreMetadata {
  std::string identity;                   // kIdentityBytes random bytes
  uint64_t token_high_water = 0;          // every token issued so far is at most this
  KeyLayout layout = KeyLayout::kHashed;  // how IDs become keys; fixed when the store is made
};

std::string MetadataKey(std::string_view records_cf_name);
// A new store's: a random identity, no token issued, hashed keys.
StoreMetadata NewStoreMetadata();
std::string EncodeMetadata(const StoreMetadata& metadata);
// kDataLoss on anything but a well-formed metadata value.
absl::StatusOr<StoreMetadata> DecodeMetadata(std::string_view bytes);

// Where one store's metadata is.
struct MetadataLocation {
  rocksdb::ColumnFamilyHandle* cf = nullptr;  // the DB's default column family
  std::string key;                            // MetadataKey(records column family name)
};

// kFailedPrecondition when `cf` could drop the metadata on its own (a compaction filter, FIFO).
absl::Status CheckMetadataColumnFamily(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf);

enum class IfMissing { kCreate, kRefuse };

// Reads the store's metadata. When there is none: the legacy mark in `records` is moved over (the store
// exists); otherwise a new store gets a random identity (kCreate) or kNotFound is returned (kRefuse: the
// caller expected an existing store). Metadata that was written is fsynced before this returns.
// Errors: kDataLoss (corrupt metadata), kNotFound, kUnavailable (I/O).
absl::StatusOr<StoreMetadata> LoadMetadata(rocksdb::DB* db, const MetadataLocation& where,
                                           rocksdb::ColumnFamilyHandle* records, IfMissing if_missing);

// Writes `metadata`, always fsynced (whatever the store's sync option: see token_source.h).
absl::Status SaveMetadata(rocksdb::DB* db, const MetadataLocation& where, const StoreMetadata& metadata);

}  // namespace idem::engine

#endif  // IDEM_ENGINE_RECORDS_STORE_METADATA_H_
