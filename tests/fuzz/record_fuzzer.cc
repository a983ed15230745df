// Fuzz target: the record codec, which reads bytes from disk (a corrupt or foreign value must be
// refused with DataLoss, never crash or be misread). Properties: a value that decodes re-encodes to one
// that decodes to the same record; the compaction filter's deadline-only reader agrees with the full
// decoder; metadata decodes only from its exact encoding.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "engine/records/record.h"

using idem::engine::DecodeDeadline;
using idem::engine::DecodeMeta;
using idem::engine::DecodeRecord;
using idem::engine::EncodeMeta;
using idem::engine::EncodeRecord;
using idem::engine::Record;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<Record> record = DecodeRecord(bytes);
  if (record.ok()) {
    if (record->token == 0) std::abort();
    const std::optional<int64_t> deadline = DecodeDeadline(bytes);
    if (!deadline.has_value() || *deadline != record->deadline_us) std::abort();
    const std::string again = EncodeRecord(*record);
    absl::StatusOr<Record> round = DecodeRecord(again);
    if (!round.ok() || round->state != record->state || round->deadline_us != record->deadline_us ||
        round->token != record->token || round->fingerprint != record->fingerprint || round->result != record->result) {
      std::abort();
    }
  } else if (record.status().code() != absl::StatusCode::kDataLoss) {
    std::abort();
  }
  absl::StatusOr<uint64_t> meta = DecodeMeta(bytes);
  if (meta.ok() && EncodeMeta(*meta) != bytes) std::abort();
  return 0;
}
