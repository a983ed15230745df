// A caller-owned DB as a consumer would open it: default, "ledger" (the consumer's effects) and "idem"
// column families. Shared by the Attach and crash tests (and the crash worker process).
#ifndef IDEM_TESTS_SUPPORT_LEDGER_DB_H_
#define IDEM_TESTS_SUPPORT_LEDGER_DB_H_

#include <memory>
#include <string>
#include <vector>

#include "rocksdb/db.h"
#include "rocksdb/env.h"

namespace idem::testing {

class LedgerDb {
 public:
  LedgerDb(const std::string& path, const rocksdb::ColumnFamilyOptions& idem_cf_options, rocksdb::Env* env = nullptr) {
    rocksdb::DBOptions db_options;
    if (env != nullptr) db_options.env = env;
    db_options.create_if_missing = true;
    db_options.create_missing_column_families = true;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
        {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions()},
        {"ledger", rocksdb::ColumnFamilyOptions()},
        {"idem", idem_cf_options}};
    rocksdb::DB* raw = nullptr;
    status = rocksdb::DB::Open(db_options, path, cfs, &handles, &raw);
    db.reset(raw);
  }
  ~LedgerDb() {
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  }
  LedgerDb(const LedgerDb&) = delete;
  LedgerDb& operator=(const LedgerDb&) = delete;

  rocksdb::ColumnFamilyHandle* ledger() const { return handles[1]; }
  rocksdb::ColumnFamilyHandle* idem() const { return handles[2]; }

  rocksdb::Status status;
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
};

}  // namespace idem::testing

#endif  // IDEM_TESTS_SUPPORT_LEDGER_DB_H_
