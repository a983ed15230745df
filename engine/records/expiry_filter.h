// Physical expiry: the compaction filter that drops records past their deadline, and a table-properties
// collector that records each SST file's deadline range so the maintenance thread can find files whose
// records have all expired without reading them.
//
// Thread safety: the factories are shared by all of RocksDB's flush/compaction threads and by the Store;
// every method is thread-safe. A filter instance is used by one thread only (RocksDB's contract).
#ifndef IDEM_ENGINE_RECORDS_EXPIRY_FILTER_H_
#define IDEM_ENGINE_RECORDS_EXPIRY_FILTER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>

#include "engine/records/store_time.h"
#include "idem/clock.h"
#include "idem/options.h"
#include "rocksdb/compaction_filter.h"
#include "rocksdb/table_properties.h"

namespace idem::engine {

inline constexpr char kExpiryFilterFactoryName[] = "idem.ExpiryFilterFactory";
inline constexpr char kDeadlineCollectorName[] = "idem.DeadlineCollector";
inline constexpr char kMinDeadlineProperty[] = "idem.min_deadline_us";
inline constexpr char kMaxDeadlineProperty[] = "idem.max_deadline_us";

// What a column family was configured for (ColumnFamilyOptionsFor): Attach compares it with the
// options it is given, so that a column family opened for a 2 s FIFO store is never used as a 24 h one.
struct RetentionShape {
  absl::Duration ttl;
  absl::Duration lease;
  CompactionProfile compaction;
};

class ExpiryFilterFactory : public rocksdb::CompactionFilterFactory {
 public:
  ExpiryFilterFactory(std::shared_ptr<Clock> clock, RetentionShape shape);

  const RetentionShape& shape() const { return shape_; }

  const char* Name() const override { return kExpiryFilterFactoryName; }
  bool ShouldFilterTableFileCreation(rocksdb::TableFileCreationReason reason) const override;
  std::unique_ptr<rocksdb::CompactionFilter> CreateCompactionFilter(
      const rocksdb::CompactionFilter::Context& context) override;

  // The store's time, shared with the Store that uses this column family (engine/store_time.h), so
  // that the read path and the filter never disagree about what has expired.
  const std::shared_ptr<StoreTime>& time() const { return time_; }

  uint64_t removed() const { return removed_.load(std::memory_order_relaxed); }

 private:
  const RetentionShape shape_;
  const std::shared_ptr<StoreTime> time_;
  std::atomic<uint64_t> removed_{0};
};

class DeadlineCollectorFactory : public rocksdb::TablePropertiesCollectorFactory {
 public:
  const char* Name() const override { return kDeadlineCollectorName; }
  rocksdb::TablePropertiesCollector* CreateTablePropertiesCollector(
      rocksdb::TablePropertiesCollectorFactory::Context context) override;
};

// The [min, max] deadline of a table's records from its properties; nullopt when the table has no idem
// records (or was written before the collector existed).
struct DeadlineRange {
  int64_t min_us;
  int64_t max_us;
};
std::optional<DeadlineRange> DeadlineRangeOf(const rocksdb::TableProperties& properties);

}  // namespace idem::engine

#endif  // IDEM_ENGINE_RECORDS_EXPIRY_FILTER_H_
