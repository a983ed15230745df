#include "engine/records/record_scan.h"

#include <memory>

#include "util/status_util.h"

namespace idem::engine {

absl::Status ScanRecords(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf, KeyLayout layout, int64_t now_us,
                         const std::function<bool(const ScannedRecord&)>& visit) {
  rocksdb::ReadOptions every_key;
  every_key.total_order_seek = true;  // the column family has a prefix extractor: see every bucket
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(every_key, cf));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (it->key().empty()) continue;  // a legacy token mark, not a record
    ScannedRecord scanned;
    scanned.key = std::string_view(it->key().data(), it->key().size());
    const std::optional<std::string_view> id = IdOfKey(layout, scanned.key);
    scanned.id = id.value_or(scanned.key);
    scanned.foreign_key = !id.has_value();
    scanned.record = DecodeRecord(std::string_view(it->value().data(), it->value().size()));
    scanned.expired = scanned.record.ok() && scanned.record->deadline_us <= now_us;
    if (!visit(scanned)) break;
  }
  return util::FromRocks(it->status(), "scanning idem records");
}

}  // namespace idem::engine
