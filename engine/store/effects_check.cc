#include "engine/store/effects_check.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"

namespace idem::engine {
namespace {

class Checker : public rocksdb::WriteBatch::Handler {
 public:
  explicit Checker(const ProtectedWrites& protect) : protect_(protect) {}

  rocksdb::Status PutCF(uint32_t cf, const rocksdb::Slice& key, const rocksdb::Slice&) override {
    return Check(cf, key, "a put");
  }
  rocksdb::Status PutEntityCF(uint32_t cf, const rocksdb::Slice& key, const rocksdb::Slice&) override {
    if (protect_.allowed != nullptr) return Refuse(cf, "a wide-column put (only puts and deletes are allowed)");
    return Check(cf, key, "a put");
  }
  rocksdb::Status DeleteCF(uint32_t cf, const rocksdb::Slice& key) override { return Check(cf, key, "a delete"); }
  rocksdb::Status SingleDeleteCF(uint32_t cf, const rocksdb::Slice& key) override { return Check(cf, key, "a delete"); }
  rocksdb::Status DeleteRangeCF(uint32_t cf, const rocksdb::Slice& begin, const rocksdb::Slice& end) override {
    if (protect_.allowed != nullptr) return Refuse(cf, "a range delete (only puts and deletes are allowed)");
    // A range touches the protected prefix if it overlaps it at all; in idem's own metadata or records
    // column family any range is refused.
    if (cf == protect_.records_cf || (cf == protect_.metadata_cf && protect_.whole_metadata_cf)) {
      return Refuse(cf, "a range delete");
    }
    if (cf == protect_.metadata_cf && !protect_.metadata_prefix.empty()) {
      const rocksdb::Slice prefix(protect_.metadata_prefix.data(), protect_.metadata_prefix.size());
      std::string prefix_end(protect_.metadata_prefix);
      prefix_end.push_back('\xff');
      if (begin.compare(rocksdb::Slice(prefix_end)) < 0 && end.compare(prefix) > 0) {
        return Refuse(cf, "a range delete over idem's metadata");
      }
    }
    return rocksdb::Status::OK();
  }
  rocksdb::Status MergeCF(uint32_t cf, const rocksdb::Slice& key, const rocksdb::Slice&) override {
    if (protect_.allowed != nullptr) return Refuse(cf, "a merge (only puts and deletes are allowed)");
    return Check(cf, key, "a merge");
  }
  rocksdb::Status PutBlobIndexCF(uint32_t cf, const rocksdb::Slice& key, const rocksdb::Slice&) override {
    if (protect_.allowed != nullptr) return Refuse(cf, "a blob index (only puts and deletes are allowed)");
    return Check(cf, key, "a blob index");
  }
  // Transaction markers: the handler's defaults already fail them. LogData carries no write, and
  // cannot fail here (the handler returns void): it is noted and refused after the walk.
  void LogData(const rocksdb::Slice&) override { saw_log_data_ = true; }
  bool saw_log_data() const { return saw_log_data_; }

 private:
  rocksdb::Status Check(uint32_t cf, const rocksdb::Slice& key, const char* what) {
    if (cf == protect_.records_cf) return Refuse(cf, what);
    if (protect_.allowed != nullptr &&
        std::find(protect_.allowed->begin(), protect_.allowed->end(), cf) == protect_.allowed->end()) {
      return Refuse(cf, absl::StrCat(what, " outside the allowed effect column families").c_str());
    }
    if (cf == protect_.metadata_cf) {
      if (protect_.whole_metadata_cf) return Refuse(cf, what);
      if (!protect_.metadata_prefix.empty() &&
          key.starts_with(rocksdb::Slice(protect_.metadata_prefix.data(), protect_.metadata_prefix.size()))) {
        return Refuse(cf, absl::StrCat(what, " of idem's metadata key").c_str());
      }
    }
    return rocksdb::Status::OK();
  }
  rocksdb::Status Refuse(uint32_t cf, const char* what) {
    return rocksdb::Status::InvalidArgument(absl::StrCat(what, " to column family #", cf));
  }

  const ProtectedWrites& protect_;
  bool saw_log_data_ = false;
};

}  // namespace

absl::Status CheckEffects(const rocksdb::WriteBatch& effects, const ProtectedWrites& protect) {
  // A batch of only LogData counts no operation: under an allow-list it is walked all the same.
  if (effects.Count() == 0 && protect.allowed == nullptr) return absl::OkStatus();
  Checker checker(protect);
  rocksdb::Status s = effects.Iterate(&checker);
  if (s.ok() && protect.allowed != nullptr && checker.saw_log_data()) {
    s = rocksdb::Status::InvalidArgument("LogData (a changelog carries writes only)");
  }
  if (s.ok()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "effects refused (nothing written): they hold ", s.getState() != nullptr ? s.getState() : s.ToString(),
      "; effects may write only the caller's own column families, never idem's records or metadata"));
}

}  // namespace idem::engine
