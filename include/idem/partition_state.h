// idem/partition_state.h — a partition's state leaving one DB as a changelog snapshot and entering
// another by SST ingestion (the protocol is in idem/changelog.h, the model in docs/SCALING.md).
//
// A partition is a set of column families of one DB: its "families", by index, 0 being the idem store's
// records and 1.. the partition's effect families in the order the partition declares them.
//
// Thread safety: WriteChangelogSnapshot may run concurrently with writes to the DB (it reads at a
// RocksDB snapshot). A ChangelogRestore is used by one thread (the replayer's).
#ifndef IDEM_PARTITION_STATE_H_
#define IDEM_PARTITION_STATE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "idem/changelog.h"
#include "idem/options.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class Snapshot;
}  // namespace rocksdb

namespace idem {

// Emits a snapshot of the families as changelog records, through `emit`: SnapshotBegin, chunks of about
// `chunk_bytes` (at least one entry each), SnapshotEnd. It reads at `snapshot` (the caller took it when
// its last committed batch had sequence `sequence`, under the lock its commit hook runs under, so the
// snapshot holds exactly the batches up to it), and leaves out idem records that have expired at
// `now` (they read as absent already). An error of `emit` stops it and is returned; a RocksDB read
// error is kUnavailable.
absl::Status WriteChangelogSnapshot(rocksdb::DB* db, const rocksdb::Snapshot* snapshot,
                                    const std::vector<rocksdb::ColumnFamilyHandle*>& families, ClaimId claim,
                                    uint64_t sequence, int64_t input_offset, absl::Time now, size_t chunk_bytes,
                                    const std::function<absl::Status(const ChangelogRecord&)>& emit);

// A ChangelogReplayer::Sink that rebuilds a partition in empty column families: snapshot entries go
// into SST files written with each family's own options (so idem's deadline properties, which drive
// expiry, are in them), ingested at SnapshotDone in one atomic IngestExternalFiles across the
// families; idem records already expired are skipped; batches after the snapshot are written as
// ordinary writes. A store whose records family uses FIFO compaction gets its snapshot as writes too:
// FIFO drops files by creation time, which ingested files lack.
class ChangelogRestore : public ChangelogReplayer::Sink {
 public:
  struct Target {
    rocksdb::DB* db = nullptr;
    std::vector<rocksdb::ColumnFamilyHandle*> families;  // by index; [0] the idem records
    // The Options the store will be attached with (clock: what "expired" means; compaction profile).
    Options store_options;
    // A directory on the DB's file system for the SST files while they are written (ingestion moves
    // them into the DB). Created if missing; the files are removed on failure.
    std::string scratch_dir;
    size_t max_file_bytes = 256 << 20;
    // true: the families hold a local copy the log's tail is written onto (a ChangelogReplayer started
    // from that copy's claim); they must hold the store's metadata, and a snapshot entry is refused
    // (kFailedPrecondition: a copy catches up by batches only).
    bool onto_local_copy = false;
  };
  // kFailedPrecondition when a family is not empty (a restore never merges into existing state);
  // kInvalidArgument for a target without families or DB. Writes the store's metadata into the empty
  // records family first, so that the store attached afterwards keys records as the log does.
  static absl::StatusOr<std::unique_ptr<ChangelogRestore>> Create(Target target);
  ~ChangelogRestore() override;

  absl::Status SnapshotEntry(const ChangelogOp& entry) override;
  absl::Status SnapshotDone() override;
  absl::Status Apply(const ChangelogRecord& batch) override;

  uint64_t entries_restored() const;  // snapshot entries kept (ingested or written)
  uint64_t expired_skipped() const;   // snapshot records of idem's family already expired
  uint64_t files_ingested() const;
  uint64_t batches_written() const;

  class Impl;

 private:
  explicit ChangelogRestore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace idem

#endif  // IDEM_PARTITION_STATE_H_
