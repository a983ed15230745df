// rocksdb::Status -> absl::Status, with codes chosen by what the caller should do next.
#ifndef IDEM_UTIL_STATUS_UTIL_H_
#define IDEM_UTIL_STATUS_UTIL_H_

#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "rocksdb/status.h"

namespace idem::util {

// Debian's abseil keeps its own absl::string_view, distinct from std::string_view.
inline absl::string_view ToAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// I/O errors, no space, busy and shutdown become kUnavailable (retry once healthy); corruption
// kDataLoss; invalid arguments kInvalidArgument. `context` prefixes the message.
absl::Status FromRocks(const rocksdb::Status& status, std::string_view context);

}  // namespace idem::util

#endif  // IDEM_UTIL_STATUS_UTIL_H_
