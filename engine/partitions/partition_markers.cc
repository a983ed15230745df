#include "engine/partitions/partition_markers.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/records/store_metadata.h"
#include "util/printable.h"
#include "util/varint.h"

namespace idem::engine {

namespace {
constexpr uint8_t kMarkerVersion = 1;
}  // namespace

std::string RecordsFamilyName(const std::string& partition) { return absl::StrCat("p:", partition, ":0"); }
std::string EffectFamilyName(const std::string& partition, size_t index, const std::string& family) {
  return absl::StrCat("p:", partition, ":", index, ":", family);
}
std::vector<std::string> FamilyNames(const PartitionLayout& layout) {
  std::vector<std::string> names = {RecordsFamilyName(layout.name)};
  for (size_t i = 0; i < layout.effect_families.size(); ++i) {
    names.push_back(EffectFamilyName(layout.name, i + 1, layout.effect_families[i]));
  }
  return names;
}

std::optional<std::string> PartitionOfRecordsFamily(std::string_view family) {
  if (family.size() < 5 || family.substr(0, 2) != "p:" || family.substr(family.size() - 2) != ":0") {
    return std::nullopt;
  }
  const std::string_view partition = family.substr(2, family.size() - 4);
  if (partition.find(':') != std::string_view::npos) return std::nullopt;
  return std::string(partition);
}

bool IsPartitionFamily(std::string_view family) {
  if (family.substr(0, 2) != "p:") return false;
  family.remove_prefix(2);
  const size_t colon = family.find(':');
  if (colon == std::string_view::npos || !CheckPartitionName(std::string(family.substr(0, colon))).ok()) {
    return false;
  }
  family.remove_prefix(colon + 1);
  if (family == "0") return true;
  const size_t next = family.find(':');
  if (next == 0 || next == std::string_view::npos || next + 1 == family.size()) return false;
  for (char c : family.substr(0, next)) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

std::string MarkerKey(std::string_view partition) {
  return std::string(kPartitionMarkerPrefix) + std::string(partition);
}

absl::Status CheckPartitionName(const std::string& name) {
  if (name.empty() || name.size() > 200) {
    return absl::InvalidArgumentError("a partition name must be 1 to 200 bytes");
  }
  for (char c : name) {
    if (c == ':' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrCat("partition name '", util::PrintableAll(name, false), "' holds ':' or a control character"));
    }
  }
  size_t start = 0;
  while (true) {
    const size_t end = std::min(name.find('/', start), name.size());
    const std::string_view part = std::string_view(name).substr(start, end - start);
    if (part.empty() || part == "." || part == "..") {
      return absl::InvalidArgumentError(absl::StrCat("partition name '", name,
                                                     "' has an empty, '.' or '..' part: names are '/'-separated "
                                                     "parts, none empty (no leading, trailing or double '/')"));
    }
    if (end == name.size()) return absl::OkStatus();
    start = end + 1;
  }
}

absl::Status CheckLayout(const PartitionLayout& layout) {
  if (absl::Status s = CheckPartitionName(layout.name); !s.ok()) return s;
  for (size_t i = 0; i < layout.effect_families.size(); ++i) {
    const std::string& f = layout.effect_families[i];
    if (f.empty() || f.size() > 200 || f.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError("an effect family name must be 1 to 200 bytes, without NUL");
    }
    for (size_t j = 0; j < i; ++j) {
      if (layout.effect_families[j] == f) {
        return absl::InvalidArgumentError(absl::StrCat("effect family '", f, "' is declared twice"));
      }
    }
  }
  return absl::OkStatus();
}

std::string EncodeMarker(const Marker& m) {
  std::string out;
  out.push_back(static_cast<char>(kMarkerVersion));
  out.push_back(static_cast<char>(m.state));
  util::PutVarint(&out, m.claim.ordinal);
  util::PutVarint(&out, m.claim.claimant);
  util::PutVarint(&out, static_cast<uint64_t>(m.changelog_offset + 1));
  util::PutVarint(&out, m.families.size());
  for (const std::string& f : m.families) {
    util::PutVarint(&out, f.size());
    out += f;
  }
  return out;
}

absl::StatusOr<Marker> DecodeMarker(std::string_view in) {
  Marker m;
  auto bad = [] { return absl::DataLossError("a partition marker does not decode"); };
  if (in.size() < 2 || static_cast<uint8_t>(in[0]) != kMarkerVersion) return bad();
  const uint8_t state = static_cast<uint8_t>(in[1]);
  if (state < 1 || state > 4) return bad();
  m.state = static_cast<CopyState>(state);
  in.remove_prefix(2);
  uint64_t offset = 0, n = 0;
  if (!util::GetVarint(&in, &m.claim.ordinal) || !util::GetVarint(&in, &m.claim.claimant) ||
      !util::GetVarint(&in, &offset) || !util::GetVarint(&in, &n) || n > in.size()) {
    return bad();
  }
  m.changelog_offset = static_cast<int64_t>(offset) - 1;
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t len = 0;
    if (!util::GetVarint(&in, &len) || len > in.size()) return bad();
    m.families.emplace_back(in.substr(0, len));
    in.remove_prefix(len);
  }
  if (!in.empty()) return bad();
  return m;
}

}  // namespace idem::engine
