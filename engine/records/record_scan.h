// Walks a store's records in key order, decoded and judged expired or live at a given store time: one
// scanner for the store (InDoubt) and its tools (idemctl stats, scan, verify), so that both read records
// and decide expiry the same way.
//
// Thread safety: a function of its arguments; the DB's own thread safety applies.
#ifndef IDEM_ENGINE_RECORDS_RECORD_SCAN_H_
#define IDEM_ENGINE_RECORDS_RECORD_SCAN_H_

#include <cstdint>
#include <functional>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/records/record.h"
#include "engine/records/record_key.h"
#include "rocksdb/db.h"

namespace idem::engine {

struct ScannedRecord {
  std::string_view key;           // as stored; valid during the visit only
  std::string_view id;            // the event ID it holds (the key itself when it holds none)
  bool foreign_key = false;       // the key is not one of the layout's: not written by idem, or damaged
  absl::StatusOr<Record> record;  // kDataLoss when the value does not decode; views valid during the visit
  bool expired = false;           // past its deadline at the scan's time (reads treat it as absent)
};

// Calls `visit` for each record of `cf` (the legacy metadata under the empty key is skipped) until it
// returns false, in key order (hashed layout: hash order). `now_us`: store time in microseconds, e.g.
// StoreTime::NowMicros(). The iterator's error, if it failed (kUnavailable, kDataLoss).
absl::Status ScanRecords(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf, KeyLayout layout, int64_t now_us,
                         const std::function<bool(const ScannedRecord&)>& visit);

}  // namespace idem::engine

#endif  // IDEM_ENGINE_RECORDS_RECORD_SCAN_H_
