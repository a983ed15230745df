#include "engine/column_families.h"

#include "engine/rocksdb_options.h"

#include <algorithm>
#include <utility>

namespace idem::engine {

StoreColumnFamilies ColumnFamiliesFor(const Options& options, std::vector<std::string> names,
                                      std::optional<rocksdb::ColumnFamilyOptions> records) {
  if (std::find(names.begin(), names.end(), rocksdb::kDefaultColumnFamilyName) == names.end()) {
    names.insert(names.begin(), rocksdb::kDefaultColumnFamilyName);
  }
  if (std::find(names.begin(), names.end(), options.column_family) == names.end()) {
    names.push_back(options.column_family);
  }
  rocksdb::ColumnFamilyOptions other;
  other.write_buffer_size = std::min<size_t>(options.write_buffer_size, 4 << 20);
  StoreColumnFamilies out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == options.column_family) {
      out.records_index = i;
      out.descriptors.emplace_back(names[i], records ? *records : OwnedColumnFamilyOptionsFor(options));
    } else {
      out.descriptors.emplace_back(names[i], other);
    }
  }
  return out;
}

}  // namespace idem::engine
