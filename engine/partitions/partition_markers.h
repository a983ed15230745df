// What the set keeps about each partition beside its families: the column-family names of a partition
// (records "p:<name>:0", effects "p:<name>:<i>:<family>"), the rules a partition's name and layout
// follow, and the marker — a copy's state, claim, changelog offset and families — under
// kPartitionMarkerPrefix in the default family.
#ifndef IDEM_ENGINE_PARTITIONS_PARTITION_MARKERS_H_
#define IDEM_ENGINE_PARTITIONS_PARTITION_MARKERS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "idem/changelog.h"
#include "idem/partition_set.h"

namespace idem::engine {

enum class CopyState : uint8_t { kActive = 1, kClean = 2, kRestored = 3, kRestoring = 4 };  // persisted

struct Marker {
  CopyState state = CopyState::kActive;
  ClaimId claim;
  int64_t changelog_offset = -1;
  std::vector<std::string> families;
};

std::string RecordsFamilyName(const std::string& partition);
std::string EffectFamilyName(const std::string& partition, size_t index, const std::string& family);
// Every family of a partition, in its order: records first, then effect family 1, 2, ...
std::vector<std::string> FamilyNames(const PartitionLayout& layout);
// The partition whose records family `family` is, or nullopt: an effect family, the default one, or a
// family that is no partition's. By shape alone ("p:", a part without ':', ":0"), so that a copy made
// under an older, looser name rule keeps its records' options.
std::optional<std::string> PartitionOfRecordsFamily(std::string_view family);
// Whether `family` has the shape of a partition's family: "p:<name>:0" or "p:<name>:<digits>:<family>",
// for a name CheckPartitionName accepts. What a set may drop as its own.
bool IsPartitionFamily(std::string_view family);
std::string MarkerKey(std::string_view partition);

// A partition name is 1 to 200 bytes of '/'-separated parts ("orders/7"), each non-empty and neither
// "." nor "..", without ':' (it separates the parts of column-family names) and without control
// characters (0x00-0x1f, 0x7f). Names that only differ by empty or dot parts ("a//b", "/a", "a/./b")
// would look like one name to anyone who reads them as paths, in logs and metric labels.
absl::Status CheckPartitionName(const std::string& name);
// The name, and effect family names of 1 to 200 bytes without NUL, none declared twice.
absl::Status CheckLayout(const PartitionLayout& layout);

std::string EncodeMarker(const Marker& m);
// kDataLoss for bytes that are not a marker of a version this release knows.
absl::StatusOr<Marker> DecodeMarker(std::string_view in);

}  // namespace idem::engine

#endif  // IDEM_ENGINE_PARTITIONS_PARTITION_MARKERS_H_
