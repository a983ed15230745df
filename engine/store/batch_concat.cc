#include "engine/store/batch_concat.h"

#include <utility>

namespace idem::engine {

void BatchConcatenation::Append(const rocksdb::WriteBatch& batch) {
  rep_.append(batch.Data(), kHeader, std::string::npos);
  count_ += batch.Count();
}

rocksdb::WriteBatch BatchConcatenation::Finish() {
  for (int i = 0; i < 4; ++i) rep_[8 + i] = static_cast<char>(count_ >> (8 * i));
  rocksdb::WriteBatch batch(std::move(rep_));
  rep_ = std::string(kHeader, '\0');
  count_ = 0;
  return batch;
}

}  // namespace idem::engine
