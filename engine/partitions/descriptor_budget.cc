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

absl::Status CheckFilesBudget(rocksdb::DB* db, size_t budget) {
  if (db == nullptr) return absl::OkStatus();
  std::vector<rocksdb::LiveFileMetaData> files;
  db->GetLiveFilesMetaData(&files);
  if (files.size() + 8 < budget) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      absl::StrCat("the partition set holds ", files.size(),
                   " SST files, all kept open: another partition would pass its descriptor budget of ", budget,
                   " (half the soft RLIMIT_NOFILE); raise the process's descriptor limit (LimitNOFILE= in a "
                   "systemd unit, ulimit -n) or move partitions to another member"));
}

}  // namespace idem::engine
