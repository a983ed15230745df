#include "engine/records/expiry_filter.h"

#include <limits>
#include <string>

#include "absl/strings/numbers.h"
#include "engine/records/record.h"

namespace idem::engine {
namespace {

// `now` is read once per filter, i.e. once per flush or compaction: a record that expires during a long
// compaction is kept until the next one, which is harmless (reads already treat it as absent).
class ExpiryFilter : public rocksdb::CompactionFilter {
 public:
  ExpiryFilter(int64_t now_us, std::atomic<uint64_t>* removed) : now_us_(now_us), removed_(removed) {}

  Decision FilterV2(int /*level*/, const rocksdb::Slice& key, ValueType value_type,
                    const rocksdb::Slice& existing_value, std::string* /*new_value*/,
                    std::string* /*skip_until*/) const override {
    if (value_type != ValueType::kValue || key.empty()) return Decision::kKeep;  // a legacy token mark lives at ""
    const std::optional<int64_t> deadline =
        DecodeDeadline(std::string_view(existing_value.data(), existing_value.size()));
    // A corrupt record is kept: `verify` must be able to report it, and dropping what we cannot read
    // could turn a duplicate into a new event.
    if (!deadline || *deadline > now_us_) return Decision::kKeep;
    removed_->fetch_add(1, std::memory_order_relaxed);
    return Decision::kRemove;
  }

  const char* Name() const override { return "idem.ExpiryFilter"; }

 private:
  const int64_t now_us_;
  std::atomic<uint64_t>* const removed_;
};

class DeadlineCollector : public rocksdb::TablePropertiesCollector {
 public:
  rocksdb::Status AddUserKey(const rocksdb::Slice& key, const rocksdb::Slice& value, rocksdb::EntryType type,
                             rocksdb::SequenceNumber /*seq*/, uint64_t /*file_size*/) override {
    if (type != rocksdb::kEntryPut || key.empty()) return rocksdb::Status::OK();
    const std::optional<int64_t> deadline = DecodeDeadline(std::string_view(value.data(), value.size()));
    if (!deadline) return rocksdb::Status::OK();
    if (*deadline < min_) min_ = *deadline;
    if (*deadline > max_) max_ = *deadline;
    return rocksdb::Status::OK();
  }

  rocksdb::Status Finish(rocksdb::UserCollectedProperties* properties) override {
    *properties = GetReadableProperties();
    return rocksdb::Status::OK();
  }

  rocksdb::UserCollectedProperties GetReadableProperties() const override {
    if (min_ > max_) return {};
    return {{kMinDeadlineProperty, std::to_string(min_)}, {kMaxDeadlineProperty, std::to_string(max_)}};
  }

  const char* Name() const override { return kDeadlineCollectorName; }

 private:
  int64_t min_ = std::numeric_limits<int64_t>::max();
  int64_t max_ = std::numeric_limits<int64_t>::min();
};

}  // namespace

ExpiryFilterFactory::ExpiryFilterFactory(std::shared_ptr<Clock> clock, RetentionShape shape)
    : shape_(shape), time_(std::make_shared<StoreTime>(std::move(clock))) {}

bool ExpiryFilterFactory::ShouldFilterTableFileCreation(rocksdb::TableFileCreationReason reason) const {
  return reason == rocksdb::TableFileCreationReason::kFlush || reason == rocksdb::TableFileCreationReason::kCompaction;
}

std::unique_ptr<rocksdb::CompactionFilter> ExpiryFilterFactory::CreateCompactionFilter(
    const rocksdb::CompactionFilter::Context& /*context*/) {
  return std::make_unique<ExpiryFilter>(time_->NowMicros(), &removed_);
}

rocksdb::TablePropertiesCollector* DeadlineCollectorFactory::CreateTablePropertiesCollector(
    rocksdb::TablePropertiesCollectorFactory::Context /*context*/) {
  return new DeadlineCollector();
}

std::optional<DeadlineRange> DeadlineRangeOf(const rocksdb::TableProperties& properties) {
  const auto& user = properties.user_collected_properties;
  auto min_it = user.find(kMinDeadlineProperty);
  auto max_it = user.find(kMaxDeadlineProperty);
  if (min_it == user.end() || max_it == user.end()) return std::nullopt;
  DeadlineRange range{};
  if (!absl::SimpleAtoi(min_it->second, &range.min_us) || !absl::SimpleAtoi(max_it->second, &range.max_us)) {
    return std::nullopt;
  }
  return range;
}

}  // namespace idem::engine
