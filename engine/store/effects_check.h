// What a caller's effects batch may write. Effects commit in the same WriteBatch as idem's done marker,
// so a batch that wrote idem's own column families could delete another ID's marker or the token
// high-water mark and silently undo the store's promises. Commit refuses such a batch before anything
// is written.
//
// Thread safety: a pure function of its arguments.
#ifndef IDEM_ENGINE_STORE_EFFECTS_CHECK_H_
#define IDEM_ENGINE_STORE_EFFECTS_CHECK_H_

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "rocksdb/write_batch.h"

namespace idem::engine {

// Column families (and one key of a shared column family) that effects must not touch.
struct ProtectedWrites {
  uint32_t records_cf = 0;           // the store's records
  uint32_t metadata_cf = 0;          // where the store's metadata lives
  bool whole_metadata_cf = false;    // true when the metadata column family is idem's own
  std::string_view metadata_prefix;  // otherwise: keys with this prefix are idem's
  // Non-null: effects may write only these column families, with plain puts and deletes (a partition's
  // effects, which its changelog must be able to carry).
  const std::vector<uint32_t>* allowed = nullptr;
};

// OK when `effects` holds only ordinary writes to column families other than the protected ones (and,
// with an allow-list, only puts and deletes to the allowed ones). kInvalidArgument naming the first
// offending write otherwise (also for transaction markers, which have no meaning inside an idem commit,
// for LogData under an allow-list, and for a batch RocksDB cannot parse).
absl::Status CheckEffects(const rocksdb::WriteBatch& effects, const ProtectedWrites& protect);

}  // namespace idem::engine

#endif  // IDEM_ENGINE_STORE_EFFECTS_CHECK_H_
