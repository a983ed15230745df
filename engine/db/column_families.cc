#include "engine/db/column_families.h"

#include "engine/db/rocksdb_options.h"

#include <algorithm>
#include <utility>

namespace idem::engine {

StoreColumnFamilies ColumnFamiliesFor(const Options& options, std::vector<std::string> names,
                                      std::optional<rocksdb::ColumnFamilyOptions> records,
                                      const std::vector<ColumnFamilySpec>& callers) {
  for (const ColumnFamilySpec& spec : callers) {
    if (std::find(names.begin(), names.end(), spec.name) == names.end()) names.push_back(spec.name);
  }
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
      const rocksdb::ColumnFamilyOptions* given = nullptr;
      for (const ColumnFamilySpec& spec : callers) {
        if (spec.name == names[i] && spec.options != nullptr) given = spec.options.get();
      }
      out.descriptors.emplace_back(names[i], given != nullptr ? *given : other);
    }
  }
  return out;
}

}  // namespace idem::engine
