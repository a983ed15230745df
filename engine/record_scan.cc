#include "engine/record_scan.h"

#include <memory>

#include "engine/status_util.h"

namespace idem::engine {

absl::Status ScanRecords(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf, int64_t now_us,
                         const std::function<bool(const ScannedRecord&)>& visit) {
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), cf));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (it->key().empty()) continue;  // a legacy token mark, not a record
    ScannedRecord scanned;
    scanned.key = std::string_view(it->key().data(), it->key().size());
    scanned.record = DecodeRecord(std::string_view(it->value().data(), it->value().size()));
    scanned.expired = scanned.record.ok() && scanned.record->deadline_us <= now_us;
    if (!visit(scanned)) break;
  }
  return FromRocks(it->status(), "scanning idem records");
}

}  // namespace idem::engine
