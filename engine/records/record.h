// The byte layout of a stored record, and its codec.
//
//   record      := version kind deadline token [fingerprint] result
//   version     := 0x01                        (u8; a different value is DataLoss, never guessed at)
//   kind        := u8: bits 0-1 state (1 = reserved, 2 = done), bit 7 has-fingerprint, others zero
//   deadline    := fixed64 little-endian, signed microseconds since the Unix epoch
//                  (lease end for reserved, retention end for done); at offset 2 so the compaction
//                  filter reads it without parsing the rest
//   token       := varint64, never 0
//   fingerprint := fixed64 little-endian       (present iff has-fingerprint)
//   result      := the remaining bytes         (empty for reserved)
//
// The empty key is never an event ID (IDs are 1..max_id_bytes). Stores written before the metadata moved
// to the default column family (engine/store_metadata.h) kept their token mark there; it is read once,
// to carry it over:
//
//   meta        := 0x4d fixed64(token high-water mark)
//
// Enum values and the version byte are persisted: never renumber them.
#ifndef IDEM_ENGINE_RECORDS_RECORD_H_
#define IDEM_ENGINE_RECORDS_RECORD_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace idem::engine {

enum class RecordState : uint8_t { kReserved = 1, kDone = 2 };

struct Record {
  RecordState state = RecordState::kReserved;
  int64_t deadline_us = 0;
  uint64_t token = 0;
  std::optional<uint64_t> fingerprint;
  std::string_view result;  // points into the decoded bytes
};

inline constexpr size_t kRecordHeaderBytes = 10;  // version + kind + deadline: the fixed prefix

void EncodeRecord(const Record& record, std::string* out);
std::string EncodeRecord(const Record& record);

// A record encoded without allocating, for results up to kInlineResult bytes (a Commit's marker).
class EncodedRecord {
 public:
  explicit EncodedRecord(const Record& record);
  EncodedRecord(const EncodedRecord&) = delete;
  EncodedRecord& operator=(const EncodedRecord&) = delete;
  std::string_view view() const { return std::string_view(data_, size_); }

 private:
  static constexpr size_t kInlineResult = 64;
  static constexpr size_t kMaxHead = kRecordHeaderBytes + 10 + 8;  // + varint token + fingerprint
  char inline_[kMaxHead + kInlineResult];
  std::string heap_;
  const char* data_;
  size_t size_;
};

// DataLoss on any malformed input: wrong version, unknown bits, truncated fields, token 0, or a
// reserved record carrying a result.
absl::StatusOr<Record> DecodeRecord(std::string_view bytes);

// Reads only the deadline; nullopt when the header is malformed (the filter then keeps the record).
std::optional<int64_t> DecodeDeadline(std::string_view bytes);

std::string EncodeMeta(uint64_t token_high_water);
absl::StatusOr<uint64_t> DecodeMeta(std::string_view bytes);

}  // namespace idem::engine

#endif  // IDEM_ENGINE_RECORDS_RECORD_H_
