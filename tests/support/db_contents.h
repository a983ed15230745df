// Everything a column family holds, as a map, for tests that compare two DBs (a source and its restore).
#ifndef IDEM_TESTS_SUPPORT_DB_CONTENTS_H_
#define IDEM_TESTS_SUPPORT_DB_CONTENTS_H_

#include <map>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "rocksdb/db.h"

namespace idem::testing {

// Every key and value of `cf`, in order (total_order_seek: idem's records family has a prefix extractor).
inline std::map<std::string, std::string> ColumnFamilyContents(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf) {
  std::map<std::string, std::string> out;
  rocksdb::ReadOptions read;
  read.total_order_seek = true;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(read, cf));
  for (it->SeekToFirst(); it->Valid(); it->Next()) out[it->key().ToString()] = it->value().ToString();
  EXPECT_TRUE(it->status().ok()) << it->status().ToString();
  return out;
}

}  // namespace idem::testing

#endif  // IDEM_TESTS_SUPPORT_DB_CONTENTS_H_
