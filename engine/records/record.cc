#include "engine/records/record.h"

#include <cstring>

#include "absl/status/status.h"

namespace idem::engine {
namespace {

constexpr uint8_t kVersion = 0x01;
constexpr uint8_t kStateMask = 0x03;
constexpr uint8_t kHasFingerprint = 0x80;
constexpr uint8_t kMetaTag = 0x4d;

void PutFixed64(std::string* out, uint64_t v) {
  char buf[8];
  for (int i = 0; i < 8; ++i) buf[i] = static_cast<char>(v >> (8 * i));
  out->append(buf, 8);
}

uint64_t GetFixed64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

char* EncodeFixed64(char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) *p++ = static_cast<char>(v >> (8 * i));
  return p;
}

char* EncodeVarint64(char* p, uint64_t v) {
  while (v >= 0x80) {
    *p++ = static_cast<char>(v | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<char>(v);
  return p;
}

// Advances *in past the varint; false when truncated or longer than 10 bytes.
bool GetVarint64(std::string_view* in, uint64_t* v) {
  uint64_t result = 0;
  for (int shift = 0, i = 0; i < 10 && i < static_cast<int>(in->size()); ++i, shift += 7) {
    const uint8_t byte = static_cast<uint8_t>((*in)[i]);
    if (i == 9 && byte > 1) return false;  // would overflow 64 bits
    result |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      in->remove_prefix(i + 1);
      *v = result;
      return true;
    }
  }
  return false;
}

absl::Status Corrupt(std::string_view what) {
  return absl::DataLossError(std::string("corrupt idem record: ") + std::string(what));
}

}  // namespace

namespace {

// Writes the fixed part of `record` (all but its result) at `p`; returns its end.
char* EncodeHead(const Record& record, char* p) {
  *p++ = static_cast<char>(kVersion);
  uint8_t kind = static_cast<uint8_t>(record.state);
  if (record.fingerprint) kind |= kHasFingerprint;
  *p++ = static_cast<char>(kind);
  p = EncodeFixed64(p, static_cast<uint64_t>(record.deadline_us));
  p = EncodeVarint64(p, record.token);
  if (record.fingerprint) p = EncodeFixed64(p, *record.fingerprint);
  return p;
}

}  // namespace

void EncodeRecord(const Record& record, std::string* out) {
  char head[kRecordHeaderBytes + 10 + 8];
  const size_t n = static_cast<size_t>(EncodeHead(record, head) - head);
  out->assign(head, n);
  out->append(record.result.data(), record.result.size());
}

EncodedRecord::EncodedRecord(const Record& record) {
  char* out = inline_;
  if (record.result.size() > kInlineResult) {
    heap_.resize(kMaxHead + record.result.size());
    out = heap_.data();
  }
  char* end = EncodeHead(record, out);
  if (!record.result.empty()) std::memcpy(end, record.result.data(), record.result.size());
  data_ = out;
  size_ = static_cast<size_t>(end - out) + record.result.size();
}

std::string EncodeRecord(const Record& record) {
  std::string out;
  EncodeRecord(record, &out);
  return out;
}

absl::StatusOr<Record> DecodeRecord(std::string_view bytes) {
  if (bytes.size() < kRecordHeaderBytes + 1) return Corrupt("too short");
  if (static_cast<uint8_t>(bytes[0]) != kVersion) return Corrupt("unknown version");
  const uint8_t kind = static_cast<uint8_t>(bytes[1]);
  if ((kind & ~(kStateMask | kHasFingerprint)) != 0) return Corrupt("unknown flags");
  Record record;
  switch (kind & kStateMask) {
    case static_cast<uint8_t>(RecordState::kReserved): record.state = RecordState::kReserved; break;
    case static_cast<uint8_t>(RecordState::kDone): record.state = RecordState::kDone; break;
    default: return Corrupt("unknown state");
  }
  record.deadline_us = static_cast<int64_t>(GetFixed64(bytes.data() + 2));
  std::string_view rest = bytes.substr(kRecordHeaderBytes);
  if (!GetVarint64(&rest, &record.token) || record.token == 0) return Corrupt("bad token");
  if (kind & kHasFingerprint) {
    if (rest.size() < 8) return Corrupt("truncated fingerprint");
    record.fingerprint = GetFixed64(rest.data());
    rest.remove_prefix(8);
  }
  if (record.state == RecordState::kReserved && !rest.empty()) return Corrupt("reservation with a result");
  record.result = rest;
  return record;
}

std::optional<int64_t> DecodeDeadline(std::string_view bytes) {
  if (bytes.size() < kRecordHeaderBytes + 1 || static_cast<uint8_t>(bytes[0]) != kVersion) {
    return std::nullopt;
  }
  return static_cast<int64_t>(GetFixed64(bytes.data() + 2));
}

std::string EncodeMeta(uint64_t token_high_water) {
  std::string out(1, static_cast<char>(kMetaTag));
  PutFixed64(&out, token_high_water);
  return out;
}

absl::StatusOr<uint64_t> DecodeMeta(std::string_view bytes) {
  if (bytes.size() != 9 || static_cast<uint8_t>(bytes[0]) != kMetaTag) {
    return absl::DataLossError("corrupt idem metadata record");
  }
  return GetFixed64(bytes.data() + 1);
}

}  // namespace idem::engine
