// A partition's state out of a DB as a changelog snapshot, and into one by SST ingestion.
#include "idem/partition_state.h"

#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/db/rocksdb_options.h"
#include "engine/records/record.h"
#include "engine/records/store_metadata.h"
#include "engine/records/store_time.h"
#include "rocksdb/db.h"
#include "rocksdb/sst_file_writer.h"
#include "rocksdb/write_batch.h"
#include "util/status_util.h"

namespace idem {
namespace {

// An idem record that reads as absent at `now_us` (or is not a record at all: the legacy empty key).
bool ExpiredRecord(std::string_view key, std::string_view value, int64_t now_us) {
  if (key.empty()) return true;
  absl::StatusOr<engine::Record> record = engine::DecodeRecord(value);
  return record.ok() && record->deadline_us <= now_us;
}

}  // namespace

absl::Status WriteChangelogSnapshot(rocksdb::DB* db, const rocksdb::Snapshot* snapshot,
                                    const std::vector<rocksdb::ColumnFamilyHandle*>& families, ClaimId claim,
                                    uint64_t sequence, int64_t input_offset, absl::Time now, size_t chunk_bytes,
                                    const std::function<absl::Status(const ChangelogRecord&)>& emit) {
  ChangelogRecord begin;
  begin.type = ChangelogRecord::Type::kSnapshotBegin;
  begin.claim = claim;
  begin.sequence = sequence;
  begin.input_offset = input_offset;
  if (absl::Status s = emit(begin); !s.ok()) return s;

  ChangelogRecord chunk;
  chunk.type = ChangelogRecord::Type::kSnapshotChunk;
  chunk.claim = claim;
  chunk.sequence = sequence;
  size_t chunk_size = 0;
  uint64_t count = 0, checksum = 0;
  const int64_t now_us = engine::ToMicros(now);
  rocksdb::ReadOptions read;
  read.snapshot = snapshot;
  read.total_order_seek = true;  // idem's family has a prefix extractor
  read.fill_cache = false;       // a full scan would evict what the consumer reads
  for (uint32_t family = 0; family < families.size(); ++family) {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(read, families[family]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      const std::string_view key(it->key().data(), it->key().size());
      const std::string_view value(it->value().data(), it->value().size());
      if (family == 0 && ExpiredRecord(key, value, now_us)) continue;
      ChangelogOp entry{ChangelogOp::Kind::kPut, family, std::string(key), std::string(value)};
      checksum = SnapshotChecksum(checksum, entry);
      ++count;
      chunk_size += key.size() + value.size() + 8;
      chunk.ops.push_back(std::move(entry));
      if (chunk_size >= chunk_bytes) {
        if (absl::Status s = emit(chunk); !s.ok()) return s;
        chunk.ops.clear();
        chunk_size = 0;
      }
    }
    if (!it->status().ok()) return util::FromRocks(it->status(), "reading a partition for its snapshot");
  }
  if (!chunk.ops.empty()) {
    if (absl::Status s = emit(chunk); !s.ok()) return s;
  }
  ChangelogRecord end;
  end.type = ChangelogRecord::Type::kSnapshotEnd;
  end.claim = claim;
  end.sequence = sequence;
  end.entry_count = count;
  end.checksum = checksum;
  return emit(end);
}

class ChangelogRestore::Impl {
 public:
  explicit Impl(Target target) : target_(std::move(target)) {
    now_us_ = engine::ToMicros(engine::ClockOf(target_.store_options)->Now());
    by_writes_ = target_.store_options.compaction == CompactionProfile::kFifo;
    families_.resize(target_.families.size());
  }
  ~Impl() { RemoveFiles(); }

  absl::Status Entry(const ChangelogOp& entry) {
    if (target_.onto_local_copy) {
      return absl::FailedPreconditionError("a local copy catches up by batches; it is not given a snapshot");
    }
    if (entry.family >= families_.size()) {
      return absl::DataLossError(
          absl::StrCat("the snapshot names family ", entry.family, "; the partition has ", families_.size()));
    }
    if (entry.family == 0 && ExpiredRecord(entry.key, entry.value, now_us_)) {
      ++expired_;
      return absl::OkStatus();
    }
    ++entries_;
    if (by_writes_) {
      pending_.Put(target_.families[entry.family], entry.key, entry.value).PermitUncheckedError();
      if (pending_.GetDataSize() >= (1u << 20)) return FlushPending();
      return absl::OkStatus();
    }
    Family& f = families_[entry.family];
    if (f.writer == nullptr) {
      if (absl::Status s = OpenFile(entry.family); !s.ok()) return s;
    }
    if (rocksdb::Status s = f.writer->Put(entry.key, entry.value); !s.ok()) {
      return util::FromRocks(s, "writing a restored SST file");
    }
    if (f.writer->FileSize() >= target_.max_file_bytes) return FinishFile(entry.family);
    return absl::OkStatus();
  }

  absl::Status Done() {
    if (by_writes_) return FlushPending();
    std::vector<rocksdb::IngestExternalFileArg> args;
    for (uint32_t family = 0; family < families_.size(); ++family) {
      if (families_[family].writer != nullptr) {
        if (absl::Status s = FinishFile(family); !s.ok()) return s;
      }
      if (families_[family].files.empty()) continue;
      rocksdb::IngestExternalFileArg arg;
      arg.column_family = target_.families[family];
      arg.external_files = families_[family].files;
      arg.options.move_files = true;
      args.push_back(std::move(arg));
    }
    if (args.empty()) return absl::OkStatus();
    // One call for every family: all of the snapshot lands, or none of it.
    const rocksdb::Status s = target_.db->IngestExternalFiles(args);
    if (!s.ok()) return util::FromRocks(s, "ingesting the restored snapshot (nothing of it landed)");
    for (const Family& f : families_) files_ += f.files.size();
    for (Family& f : families_) f.files.clear();  // moved into the DB
    return absl::OkStatus();
  }

  absl::Status Apply(const ChangelogRecord& batch) {
    rocksdb::WriteBatch write;
    for (const ChangelogOp& op : batch.ops) {
      if (op.family >= families_.size()) {
        return absl::DataLossError(
            absl::StrCat("a changelog batch names family ", op.family, "; the partition has ", families_.size()));
      }
      rocksdb::ColumnFamilyHandle* cf = target_.families[op.family];
      rocksdb::Status s;
      switch (op.kind) {
        case ChangelogOp::Kind::kPut: s = write.Put(cf, op.key, op.value); break;
        case ChangelogOp::Kind::kDelete: s = write.Delete(cf, op.key); break;
        case ChangelogOp::Kind::kSingleDelete: s = write.SingleDelete(cf, op.key); break;
      }
      if (!s.ok()) return util::FromRocks(s, "building a restored batch");
    }
    const rocksdb::Status s = target_.db->Write(rocksdb::WriteOptions(), &write);
    if (!s.ok()) return util::FromRocks(s, "writing a restored batch");
    ++batches_;
    return absl::OkStatus();
  }

  const Target& target() const { return target_; }
  uint64_t entries_ = 0, expired_ = 0, files_ = 0, batches_ = 0;

 private:
  struct Family {
    std::unique_ptr<rocksdb::SstFileWriter> writer;
    std::string open_file;
    std::vector<std::string> files;
  };

  absl::Status OpenFile(uint32_t family) {
    Family& f = families_[family];
    rocksdb::ColumnFamilyHandle* cf = target_.families[family];
    // The family's own options: its comparator, table format and filters, and idem's deadline
    // collector, which writes the properties expiry maintenance selects files by.
    const rocksdb::Options options = target_.db->GetOptions(cf);
    f.writer = std::make_unique<rocksdb::SstFileWriter>(rocksdb::EnvOptions(), options, cf);
    f.open_file = absl::StrCat(target_.scratch_dir, "/restore-", family, "-", f.files.size(), ".sst");
    if (rocksdb::Status s = f.writer->Open(f.open_file); !s.ok()) {
      f.writer.reset();
      return util::FromRocks(s, "creating a restored SST file");
    }
    return absl::OkStatus();
  }

  absl::Status FinishFile(uint32_t family) {
    Family& f = families_[family];
    const rocksdb::Status s = f.writer->Finish();
    f.writer.reset();
    if (!s.ok()) return util::FromRocks(s, "finishing a restored SST file");
    f.files.push_back(std::move(f.open_file));
    return absl::OkStatus();
  }

  absl::Status FlushPending() {
    if (pending_.Count() == 0) return absl::OkStatus();
    const rocksdb::Status s = target_.db->Write(rocksdb::WriteOptions(), &pending_);
    pending_.Clear();
    return s.ok() ? absl::OkStatus() : util::FromRocks(s, "writing restored snapshot entries");
  }

  void RemoveFiles() {
    std::error_code ec;
    for (Family& f : families_) {
      f.writer.reset();
      if (!f.open_file.empty()) std::filesystem::remove(f.open_file, ec);
      for (const std::string& file : f.files) std::filesystem::remove(file, ec);
    }
  }

  const Target target_;
  int64_t now_us_ = 0;
  bool by_writes_ = false;
  std::vector<Family> families_;
  rocksdb::WriteBatch pending_;
};

absl::StatusOr<std::unique_ptr<ChangelogRestore>> ChangelogRestore::Create(Target target) {
  if (target.db == nullptr || target.families.empty()) {
    return absl::InvalidArgumentError("a restore needs a DB and the partition's families (idem's records first)");
  }
  rocksdb::ReadOptions read;
  read.total_order_seek = true;
  for (rocksdb::ColumnFamilyHandle* cf :
       target.onto_local_copy ? std::vector<rocksdb::ColumnFamilyHandle*>{} : target.families) {
    std::unique_ptr<rocksdb::Iterator> it(target.db->NewIterator(read, cf));
    it->SeekToFirst();
    if (!it->status().ok()) return util::FromRocks(it->status(), "checking a restore target is empty");
    if (it->Valid()) {
      return absl::FailedPreconditionError(
          absl::StrCat("column family '", cf->GetName(), "' is not empty: a restore never merges into existing state"));
    }
  }
  std::error_code ec;
  std::filesystem::create_directories(target.scratch_dir, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("creating ", target.scratch_dir, ": ", ec.message()));
  // The store's metadata before any record: found with records and no metadata, a store would be
  // taken for one made before metadata existed, keyed the old way.
  rocksdb::ColumnFamilyHandle* records = target.families[0];
  const engine::MetadataLocation where{target.db->DefaultColumnFamily(), engine::MetadataKey(records->GetName())};
  absl::StatusOr<engine::StoreMetadata> metadata = engine::LoadMetadata(
      target.db, where, records, target.onto_local_copy ? engine::IfMissing::kRefuse : engine::IfMissing::kCreate);
  if (!metadata.ok()) return metadata.status();
  if (metadata->layout != engine::KeyLayout::kHashed) {
    return absl::FailedPreconditionError("the restore target's metadata keys records the old way");
  }
  return std::unique_ptr<ChangelogRestore>(new ChangelogRestore(std::make_unique<Impl>(std::move(target))));
}

ChangelogRestore::ChangelogRestore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ChangelogRestore::~ChangelogRestore() = default;

absl::Status ChangelogRestore::SnapshotEntry(const ChangelogOp& entry) { return impl_->Entry(entry); }
absl::Status ChangelogRestore::SnapshotDone() { return impl_->Done(); }
absl::Status ChangelogRestore::Apply(const ChangelogRecord& batch) { return impl_->Apply(batch); }
uint64_t ChangelogRestore::entries_restored() const { return impl_->entries_; }
uint64_t ChangelogRestore::expired_skipped() const { return impl_->expired_; }
uint64_t ChangelogRestore::files_ingested() const { return impl_->files_; }
uint64_t ChangelogRestore::batches_written() const { return impl_->batches_; }

}  // namespace idem
