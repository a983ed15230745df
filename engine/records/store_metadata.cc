#include "engine/records/store_metadata.h"

#include <algorithm>
#include <memory>
#include <random>

#include "absl/strings/str_cat.h"
#include "engine/records/record.h"
#include "util/status_util.h"

namespace idem::engine {
namespace {

constexpr uint8_t kMetadataTag = 0x4e;
constexpr size_t kMetadataBytes = 1 + kIdentityBytes + 8;

std::string NewIdentity() {
  std::random_device random;
  std::string identity(kIdentityBytes, '\0');
  for (size_t i = 0; i < kIdentityBytes; i += 4) {
    const uint32_t word = random();
    for (size_t b = 0; b < 4; ++b) identity[i + b] = static_cast<char>(word >> (8 * b));
  }
  return identity;
}

}  // namespace

std::string MetadataKey(std::string_view records_cf_name) {
  std::string key(kMetadataKeyPrefix);
  key.append(records_cf_name);
  return key;
}

StoreMetadata NewStoreMetadata() {
  StoreMetadata metadata;
  metadata.identity = NewIdentity();
  metadata.layout = KeyLayout::kHashed;
  return metadata;
}

std::string EncodeMetadata(const StoreMetadata& metadata) {
  std::string out(1, static_cast<char>(kMetadataTag));
  out.append(metadata.identity);
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(metadata.token_high_water >> (8 * i)));
  // Plain stores keep the metadata they were made with, byte for byte: an older release still opens
  // them. A hashed store's layout byte makes an older release refuse it (kDataLoss) instead of reading
  // its keys as IDs.
  if (metadata.layout != KeyLayout::kPlain) out.push_back(static_cast<char>(metadata.layout));
  return out;
}

absl::StatusOr<StoreMetadata> DecodeMetadata(std::string_view bytes) {
  if ((bytes.size() != kMetadataBytes && bytes.size() != kMetadataBytes + 1) ||
      static_cast<uint8_t>(bytes[0]) != kMetadataTag) {
    return absl::DataLossError(absl::StrCat("idem store metadata is corrupt (", bytes.size(), " bytes)"));
  }
  StoreMetadata metadata;
  metadata.layout = KeyLayout::kPlain;
  if (bytes.size() == kMetadataBytes + 1) {
    const uint8_t layout = static_cast<uint8_t>(bytes[kMetadataBytes]);
    if (layout != static_cast<uint8_t>(KeyLayout::kHashed)) {
      return absl::DataLossError(absl::StrCat("idem store metadata names key layout ", layout,
                                              ", which this release does not know (made by a newer one?)"));
    }
    metadata.layout = KeyLayout::kHashed;
  }
  metadata.identity = std::string(bytes.substr(1, kIdentityBytes));
  for (int i = 7; i >= 0; --i) {
    metadata.token_high_water = (metadata.token_high_water << 8) | static_cast<uint8_t>(bytes[1 + kIdentityBytes + i]);
  }
  return metadata;
}

absl::Status CheckMetadataColumnFamily(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf) {
  const rocksdb::ColumnFamilyOptions options = db->GetOptions(cf);
  if (options.compaction_filter != nullptr || options.compaction_filter_factory != nullptr ||
      options.compaction_style == rocksdb::kCompactionStyleFIFO) {
    return absl::FailedPreconditionError(absl::StrCat(
        "idem keeps its metadata (store identity, token high-water mark) in the DB's column family '", cf->GetName(),
        "', which has a compaction filter or FIFO compaction and could drop it; tokens would "
        "then repeat after a restart. Open the default column family without a filter and without FIFO"));
  }
  return absl::OkStatus();
}

absl::Status SaveMetadata(rocksdb::DB* db, const MetadataLocation& where, const StoreMetadata& metadata) {
  rocksdb::WriteOptions durable;
  durable.sync = true;
  const rocksdb::Status s = db->Put(durable, where.cf, where.key, EncodeMetadata(metadata));
  return util::FromRocks(s, "writing idem store metadata");
}

absl::StatusOr<StoreMetadata> LoadMetadata(rocksdb::DB* db, const MetadataLocation& where,
                                           rocksdb::ColumnFamilyHandle* records, IfMissing if_missing) {
  std::string value;
  rocksdb::Status s = db->Get(rocksdb::ReadOptions(), where.cf, where.key, &value);
  if (s.ok()) return DecodeMetadata(value);
  if (!s.IsNotFound()) return util::FromRocks(s, "reading idem store metadata");

  // No metadata: a new store, or one made before metadata moved here. An old store's mark may be gone
  // already (FIFO drops whole files), so the records are scanned too: no token they carry is reissued.
  StoreMetadata metadata;
  bool existing = false;
  rocksdb::ReadOptions every_key;
  every_key.total_order_seek = true;  // the records column family has a prefix extractor
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(every_key, records));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const std::string_view bytes(it->value().data(), it->value().size());
    existing = true;
    if (it->key().empty()) {
      absl::StatusOr<uint64_t> legacy = DecodeMeta(bytes);
      if (!legacy.ok()) return legacy.status();
      metadata.token_high_water = std::max(metadata.token_high_water, *legacy);
    } else if (absl::StatusOr<Record> record = DecodeRecord(bytes); record.ok()) {
      metadata.token_high_water = std::max(metadata.token_high_water, record->token);
    }
  }
  if (!it->status().ok()) return util::FromRocks(it->status(), "reading idem records for their tokens");
  if (!existing && if_missing == IfMissing::kRefuse) {
    return absl::NotFoundError(absl::StrCat("no idem store metadata for column family '", records->GetName(), "'"));
  }
  metadata.identity = NewIdentity();
  // A store that existed before its metadata did keeps its keys as they are; a new one hashes them.
  metadata.layout = existing ? KeyLayout::kPlain : KeyLayout::kHashed;
  if (absl::Status saved = SaveMetadata(db, where, metadata); !saved.ok()) return saved;
  return metadata;
}

}  // namespace idem::engine
