#include "util/status_util.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace idem::util {

absl::Status FromRocks(const rocksdb::Status& status, std::string_view context) {
  if (status.ok()) return absl::OkStatus();
  const std::string message = absl::StrCat(ToAbsl(context), ": ", status.ToString());
  switch (status.code()) {
    case rocksdb::Status::kNotFound: return absl::NotFoundError(message);
    case rocksdb::Status::kCorruption: return absl::DataLossError(message);
    case rocksdb::Status::kInvalidArgument: return absl::InvalidArgumentError(message);
    case rocksdb::Status::kNotSupported: return absl::UnimplementedError(message);
    case rocksdb::Status::kAborted: return absl::AbortedError(message);
    default:  // kIOError (incl. no space), kBusy, kTimedOut, kTryAgain, kIncomplete, kShutdownInProgress...
      return absl::UnavailableError(message);
  }
}

}  // namespace idem::util
