#include "engine/partitions/descriptor_budget.h"

#include <sys/resource.h>

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"

namespace idem::engine {

size_t FilesBudget(bool raise) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return 512;
  if (raise && limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  if (limit.rlim_cur == RLIM_INFINITY) return size_t{1} << 20;
  return std::max<size_t>(64, static_cast<size_t>(limit.rlim_cur) / 2);
}

namespace {

size_t LiveFiles(rocksdb::DB* db) {
  std::vector<rocksdb::LiveFileMetaData> files;
  db->GetLiveFilesMetaData(&files);
  return files.size();
}

absl::Status OverBudget(size_t files, size_t budget) {
  return absl::ResourceExhaustedError(
      absl::StrCat("the partition set holds ", files,
                   " SST files, all kept open: another partition would pass its descriptor budget of ", budget,
                   " (half the soft RLIMIT_NOFILE); raise the process's descriptor limit (LimitNOFILE= in a "
                   "systemd unit, ulimit -n) or move partitions to another member"));
}

}  // namespace

absl::Status FilesBudgetCheck::Check(rocksdb::DB* db, size_t families) {
  if (db == nullptr) return absl::OkStatus();
  const auto now = std::chrono::steady_clock::now();
  if (!counted_at_ || now - *counted_at_ >= recount_after_ || counted_ + admitted_since_ + kMargin >= budget_) {
    counted_ = LiveFiles(db);
    counted_at_ = now;
    admitted_since_ = 0;
  }
  if (counted_ + admitted_since_ + kMargin >= budget_) return OverBudget(counted_, budget_);
  admitted_since_ += families;
  return absl::OkStatus();
}

}  // namespace idem::engine
