// The byte format of changelog records (idem/changelog.h):
//
//   record := 0xC7 version(1) type(1) varint(ordinal) varint(claimant) body
//   Claim          body := (empty)
//   Batch          body := varint(sequence) varint(input_offset + 1) varint(n) op^n          (version 1)
//   Batch          body := varint(sequence) varint(previous_sequence) varint(input_offset + 1) varint(n) op^n
//                                                                                          (version 2)
//   SnapshotBegin  body := varint(sequence) varint(input_offset + 1)
//   SnapshotChunk  body := varint(sequence) varint(n) op^n
//   SnapshotEnd    body := varint(sequence) varint(entry_count) fixed64-le(checksum)
//   op             := kind(1) varint(family) varint(|key|) key [varint(|value|) value]   (value: puts)
//
// Varints are LEB128 (RocksDB's and protobuf's). Nothing may follow the body. Version 2 differs from
// version 1 only in the Batch's previous_sequence; a batch without one is written as version 1, every
// other record as version 2, and both are read.
#include <optional>
#include <string>
#include <utility>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "absl/strings/str_cat.h"
#include "idem/changelog.h"
#include "rocksdb/write_batch.h"
#include "util/varint.h"

namespace idem {
namespace {

constexpr uint8_t kMagic = 0xC7;
constexpr uint8_t kVersion = 2;  // the newest this release reads and writes

void PutBytes(std::string* out, std::string_view bytes) {
  util::PutVarint(out, bytes.size());
  out->append(bytes.data(), bytes.size());
}

void PutOp(std::string* out, const ChangelogOp& op) {
  out->push_back(static_cast<char>(op.kind));
  util::PutVarint(out, op.family);
  PutBytes(out, op.key);
  if (op.kind == ChangelogOp::Kind::kPut) PutBytes(out, op.value);
}

// Reads from the front of `in_`; every failure is sticky and reported once, at the end.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}

  uint8_t Byte() {
    if (in_.empty()) return Fail("truncated"), 0;
    const uint8_t b = static_cast<uint8_t>(in_[0]);
    in_.remove_prefix(1);
    return b;
  }
  uint64_t Varint() {
    uint64_t v = 0;
    if (!util::GetVarint(&in_, &v)) return Fail("a varint is truncated or overflows 64 bits"), 0;
    return v;
  }
  std::string Bytes() {
    const uint64_t n = Varint();
    if (n > in_.size()) return Fail("a length runs past the end"), std::string();
    std::string out(in_.substr(0, n));
    in_.remove_prefix(n);
    return out;
  }
  uint64_t Fixed64() {
    if (in_.size() < 8) return Fail("truncated"), 0;
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(in_[i]);
    in_.remove_prefix(8);
    return v;
  }
  std::optional<ChangelogOp> Op() {
    ChangelogOp op;
    const uint8_t kind = Byte();
    if (kind < 1 || kind > 3) return Fail(absl::StrCat("unknown operation ", kind)), std::nullopt;
    op.kind = static_cast<ChangelogOp::Kind>(kind);
    const uint64_t family = Varint();
    if (family > UINT32_MAX) return Fail("family index out of range"), std::nullopt;
    op.family = static_cast<uint32_t>(family);
    op.key = Bytes();
    if (op.kind == ChangelogOp::Kind::kPut) op.value = Bytes();
    return op;
  }
  void Ops(std::vector<ChangelogOp>* ops) {
    const uint64_t n = Varint();
    // Each op takes at least 3 bytes: a count beyond that is corrupt, not a reason to reserve memory.
    if (n > in_.size() / 3) return Fail("operation count runs past the end");
    ops->reserve(n);
    for (uint64_t i = 0; i < n && error_.empty(); ++i) {
      if (std::optional<ChangelogOp> op = Op()) ops->push_back(*std::move(op));
    }
  }
  void Fail(std::string why) {
    if (error_.empty()) error_ = std::move(why);
    in_ = {};
  }
  bool at_end() const { return in_.empty(); }
  const std::string& error() const { return error_; }

 private:
  std::string_view in_;
  std::string error_;
};

}  // namespace

std::string EncodeChangelogRecord(const ChangelogRecord& record) {
  std::string out;
  out.push_back(static_cast<char>(kMagic));
  const bool v1 = record.type == ChangelogRecord::Type::kBatch && !record.previous_sequence.has_value();
  out.push_back(static_cast<char>(v1 ? 1 : kVersion));
  out.push_back(static_cast<char>(record.type));
  util::PutVarint(&out, record.claim.ordinal);
  util::PutVarint(&out, record.claim.claimant);
  using Type = ChangelogRecord::Type;
  switch (record.type) {
    case Type::kClaim: break;
    case Type::kBatch:
      util::PutVarint(&out, record.sequence);
      if (!v1) util::PutVarint(&out, *record.previous_sequence);
      util::PutVarint(&out, static_cast<uint64_t>(record.input_offset + 1));
      util::PutVarint(&out, record.ops.size());
      for (const ChangelogOp& op : record.ops) PutOp(&out, op);
      break;
    case Type::kSnapshotBegin:
      util::PutVarint(&out, record.sequence);
      util::PutVarint(&out, static_cast<uint64_t>(record.input_offset + 1));
      break;
    case Type::kSnapshotChunk:
      util::PutVarint(&out, record.sequence);
      util::PutVarint(&out, record.ops.size());
      for (const ChangelogOp& op : record.ops) PutOp(&out, op);
      break;
    case Type::kSnapshotEnd:
      util::PutVarint(&out, record.sequence);
      util::PutVarint(&out, record.entry_count);
      for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(record.checksum >> (8 * i)));
      break;
  }
  return out;
}

absl::StatusOr<ChangelogRecord> DecodeChangelogRecord(std::string_view bytes) {
  Reader in(bytes);
  ChangelogRecord record;
  const uint8_t magic = in.Byte();
  const uint8_t version = in.Byte();
  const uint8_t type = in.Byte();
  if (!in.error().empty() || magic != kMagic) {
    return absl::DataLossError("not an idem changelog record (bad magic byte or too short)");
  }
  if (version < 1 || version > kVersion) {
    return absl::DataLossError(
        absl::StrCat("changelog record of version ", version, "; this release reads versions 1 to ", kVersion));
  }
  if (type < 1 || type > 5) return absl::DataLossError(absl::StrCat("changelog record of unknown type ", type));
  record.type = static_cast<ChangelogRecord::Type>(type);
  record.claim.ordinal = in.Varint();
  record.claim.claimant = in.Varint();
  using Type = ChangelogRecord::Type;
  switch (record.type) {
    case Type::kClaim: break;
    case Type::kBatch:
      record.sequence = in.Varint();
      if (version >= 2) record.previous_sequence = in.Varint();
      record.input_offset = static_cast<int64_t>(in.Varint()) - 1;
      in.Ops(&record.ops);
      break;
    case Type::kSnapshotBegin:
      record.sequence = in.Varint();
      record.input_offset = static_cast<int64_t>(in.Varint()) - 1;
      break;
    case Type::kSnapshotChunk:
      record.sequence = in.Varint();
      in.Ops(&record.ops);
      for (const ChangelogOp& op : record.ops) {
        if (op.kind != ChangelogOp::Kind::kPut) in.Fail("a snapshot chunk holds a delete");
      }
      break;
    case Type::kSnapshotEnd:
      record.sequence = in.Varint();
      record.entry_count = in.Varint();
      record.checksum = in.Fixed64();
      break;
  }
  if (in.error().empty() && !in.at_end()) in.Fail("bytes after the record");
  if (!in.error().empty()) return absl::DataLossError(absl::StrCat("corrupt changelog record: ", in.error()));
  return record;
}

uint64_t SnapshotChecksum(uint64_t previous, const ChangelogOp& entry) {
  std::string bytes;
  PutOp(&bytes, entry);
  return XXH3_64bits_withSeed(bytes.data(), bytes.size(), previous);
}

namespace {

class OpCollector : public rocksdb::WriteBatch::Handler {
 public:
  explicit OpCollector(const std::function<std::optional<uint32_t>(uint32_t)>& family_of) : family_of_(family_of) {}

  rocksdb::Status PutCF(uint32_t cf, const rocksdb::Slice& key, const rocksdb::Slice& value) override {
    return Add(ChangelogOp::Kind::kPut, cf, key, value);
  }
  rocksdb::Status DeleteCF(uint32_t cf, const rocksdb::Slice& key) override {
    return Add(ChangelogOp::Kind::kDelete, cf, key, {});
  }
  rocksdb::Status SingleDeleteCF(uint32_t cf, const rocksdb::Slice& key) override {
    return Add(ChangelogOp::Kind::kSingleDelete, cf, key, {});
  }
  // Everything else fails by the handler's defaults; LogData cannot fail here and is noted.
  void LogData(const rocksdb::Slice&) override { log_data_ = true; }

  std::vector<ChangelogOp> ops;
  bool log_data_ = false;

 private:
  rocksdb::Status Add(ChangelogOp::Kind kind, uint32_t cf, const rocksdb::Slice& key, const rocksdb::Slice& value) {
    const std::optional<uint32_t> family = family_of_(cf);
    if (!family) return rocksdb::Status::InvalidArgument(absl::StrCat("a write to column family #", cf));
    ops.push_back(ChangelogOp{kind, *family, key.ToString(), value.ToString()});
    return rocksdb::Status::OK();
  }
  const std::function<std::optional<uint32_t>(uint32_t)>& family_of_;
};

}  // namespace

absl::StatusOr<std::vector<ChangelogOp>> OpsOfBatch(const rocksdb::WriteBatch& batch,
                                                    const std::function<std::optional<uint32_t>(uint32_t)>& family_of) {
  OpCollector collector(family_of);
  rocksdb::Status s = batch.Iterate(&collector);
  if (s.ok() && collector.log_data_) s = rocksdb::Status::InvalidArgument("LogData");
  if (!s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("a committed batch the changelog cannot carry (", s.ToString(),
                     "): only puts and deletes to the partition's own families can be replayed"));
  }
  return std::move(collector.ops);
}

}  // namespace idem
