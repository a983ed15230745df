// What a message says: its headers, its event, and the snapshot pointer an offset commit carries.
#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <charconv>

#include "absl/strings/str_cat.h"
#include "idem/fingerprint.h"
#include "idem/kafka.h"
#include "util/status_util.h"

namespace idem {

std::optional<std::string_view> KafkaMessage::Header(std::string_view name) const {
  if (native == nullptr) return std::nullopt;
  rd_kafka_headers_t* headers = nullptr;
  auto* message = static_cast<rd_kafka_message_t*>(const_cast<void*>(native));
  if (rd_kafka_message_headers(message, &headers) != RD_KAFKA_RESP_ERR_NO_ERROR) return std::nullopt;
  const std::string n(name);
  const void* value = nullptr;
  size_t size = 0;
  if (rd_kafka_header_get_last(headers, n.c_str(), &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR) return std::nullopt;
  if (value == nullptr) return std::string_view();
  return std::string_view(static_cast<const char*>(value), size);
}

std::optional<Event> DefaultKafkaEventOf(const KafkaMessage& message) {
  std::optional<std::string_view> id = message.Header("idem-id");
  if (!id || id->empty()) id = message.key;
  if (id->empty()) return std::nullopt;
  return Event(*id, Fingerprint(message.value));
}

namespace {

constexpr std::string_view kPointerPrefix = "idem1 snapshot=";
constexpr std::string_view kMetadataPrefix = "idem2";

std::optional<int64_t> ParseOffset(std::string_view digits) {
  int64_t offset = -1;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), offset);
  if (ec != std::errc() || end != digits.data() + digits.size() || offset < 0) return std::nullopt;
  return offset;
}

}  // namespace

std::string EncodeCommitMetadata(const CommitMetadata& metadata) {
  std::string out = absl::StrCat(util::ToAbsl(kMetadataPrefix), " log=", std::max<int64_t>(metadata.log_end, 0));
  if (metadata.snapshot) absl::StrAppend(&out, " snapshot=", *metadata.snapshot);
  return out;
}

std::optional<CommitMetadata> DecodeCommitMetadata(std::string_view metadata) {
  CommitMetadata out;
  if (metadata.substr(0, kPointerPrefix.size()) == kPointerPrefix) {  // written before the log's end was kept
    out.snapshot = ParseOffset(metadata.substr(kPointerPrefix.size()));
    if (!out.snapshot) return std::nullopt;
    out.log_end = *out.snapshot + 1;
    return out;
  }
  if (metadata.substr(0, kMetadataPrefix.size()) != kMetadataPrefix) return std::nullopt;
  metadata.remove_prefix(kMetadataPrefix.size());
  bool has_log = false;
  while (!metadata.empty()) {
    if (metadata[0] != ' ') return std::nullopt;
    metadata.remove_prefix(1);
    const size_t space = metadata.find(' ');
    const std::string_view field = metadata.substr(0, space);
    metadata.remove_prefix(space == std::string_view::npos ? metadata.size() : space);
    const size_t eq = field.find('=');
    if (eq == std::string_view::npos) return std::nullopt;
    const std::optional<int64_t> value = ParseOffset(field.substr(eq + 1));
    if (!value) return std::nullopt;
    if (field.substr(0, eq) == "log") {
      out.log_end = *value;
      has_log = true;
    } else if (field.substr(0, eq) == "snapshot") {
      out.snapshot = value;
    }  // a field a later release added: ignored
  }
  if (!has_log) return std::nullopt;
  return out;
}

std::string EncodeSnapshotPointer(int64_t changelog_offset) {
  return absl::StrCat(util::ToAbsl(kPointerPrefix), changelog_offset);
}

std::optional<int64_t> DecodeSnapshotPointer(std::string_view metadata) {
  const std::optional<CommitMetadata> decoded = DecodeCommitMetadata(metadata);
  if (!decoded) return std::nullopt;
  return decoded->snapshot;
}

}  // namespace idem
