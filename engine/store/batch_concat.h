// Many WriteBatches as one, for CommitBatch: every event's effects and every marker in ONE DB::Write
// (one WAL append, one fsync with sync = true). RocksDB has no public "append a batch" in 7.8, but its
// batch representation is its WAL format: a 12-byte header (fixed64 sequence, fixed32 count) and then
// the records, so batches concatenate by appending their records and adding their counts.
//
// Thread safety: one instance per thread.
#ifndef IDEM_ENGINE_STORE_BATCH_CONCAT_H_
#define IDEM_ENGINE_STORE_BATCH_CONCAT_H_

#include <cstdint>
#include <string>

#include "rocksdb/write_batch.h"

namespace idem::engine {

class BatchConcatenation {
 public:
  // Appends the records of `batch` (left as it is).
  void Append(const rocksdb::WriteBatch& batch);
  uint32_t count() const { return count_; }
  // The concatenation; the object is empty afterwards.
  rocksdb::WriteBatch Finish();

 private:
  static constexpr size_t kHeader = 12;
  std::string rep_ = std::string(kHeader, '\0');
  uint32_t count_ = 0;
};

}  // namespace idem::engine

#endif  // IDEM_ENGINE_STORE_BATCH_CONCAT_H_
