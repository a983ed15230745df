// PartitionSet::Impl, the class behind idem/partition_set.h, declared here so that its jobs live in
// files of their own (as the Store's do in store_impl.h): partition_set.cc (open, activate, deactivate,
// close, maintenance, stats), partition_set_db.cc (the set's DB: its families and markers, resume and
// reopen), restore_session.cc (restores as sessions).
//
// The set's DB runs on a DbLifecycle (engine/db/db_lifecycle.h), as a Store's does: everything that
// touches the DB holds a Pin of it, taken BEFORE mu_ (a reopen holds the DB exclusively and its hooks
// take mu_); nothing waits for a Pin or a reopen while holding mu_.
//
// On disk: every partition is column families named "p:<name>:0" (idem's records) and
// "p:<name>:<i>:<family>" (effect family i), and a marker in the default column family under
// "\0idem\0partition\0<name>" saying what state the copy is in (active, clean, restored), the claim and
// changelog offset noted at deactivation, and the effect families. The marker is written before the
// partition is used and rewritten at deactivation, so a crash leaves "active": unclean.
#ifndef IDEM_ENGINE_PARTITIONS_PARTITION_SET_IMPL_H_
#define IDEM_ENGINE_PARTITIONS_PARTITION_SET_IMPL_H_

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/db/db_lifecycle.h"
#include "engine/db/disk_guard.h"
#include "engine/partitions/descriptor_budget.h"
#include "engine/partitions/partition.h"
#include "engine/partitions/partition_markers.h"
#include "engine/partitions/restore_session.h"
#include "engine/records/store_metadata.h"
#include "engine/store/store_registry.h"
#include "idem/partition_set.h"
#include "idem/partition_state.h"
#include "rocksdb/cache.h"
#include "rocksdb/db.h"
#include "util/periodic.h"

namespace idem {

class PartitionSet::Impl {
 public:
  Impl(PartitionSetOptions options, std::string path) : options_(std::move(options)), path_(std::move(path)) {}
  ~Impl() { Close().IgnoreError(); }

  absl::Status Open();

  std::vector<LocalCopy> LocalCopies() const;

  // REQUIRES: a Pin, mu_ held. A new partition must fit in the descriptor budget, so that the set can
  // always open every file.
  absl::Status CheckFilesBudget(const PartitionLayout& layout) {
    return files_budget_.Check(lifecycle_->db(), 1 + layout.effect_families.size());
  }

  absl::Status PrepareFamilies(const std::vector<PartitionLayout>& layouts);

  absl::StatusOr<Partition*> Activate(const PartitionLayout& layout, const ActivateOptions& activate);

  absl::Status Deactivate(std::string_view name, KeepLocalCopy keep, int64_t changelog_offset);

  absl::Status DropLocalCopy(std::string_view name);

  // Begins a restore: under the set's lock, the partition's families (fresh, or its clean copy) marked
  // kRestoring, and the writer of the replay. The replay then runs without the lock (other partitions
  // go on); RestoreSessionImpl ends it.
  absl::StatusOr<std::unique_ptr<engine::RestoreSession>> BeginRestore(const PartitionLayout& layout,
                                                                       bool onto_local_copy);
  enum class RestoreEnd { kFinished, kDbLost, kAbandoned };
  // Ends a restore: the copy marked restored (kFinished), or its families dropped.
  absl::Status EndRestore(const PartitionLayout& layout, bool onto_local_copy,
                          std::unique_ptr<ChangelogRestore> restore, std::chrono::steady_clock::time_point started,
                          RestoreEnd end);

  Partition* Find(std::string_view name) const;

  std::vector<std::string> ActiveNames() const;

  absl::Status Resume();

  PartitionSetStats GetStats() const;

  std::string ToPrometheus() const;

  absl::Status Close();

  rocksdb::DB* db() const { return lifecycle_ == nullptr ? nullptr : lifecycle_->db(); }

 private:
  // Opens the DB with every column family it has, each with the options it was first opened or created
  // with (the same expiry-filter factory every time: a store's time and counters live in it). A reopen
  // (`create` false) never creates: kNotFound where the DB was.
  absl::StatusOr<engine::OpenedDb> OpenDb(bool create);

  const rocksdb::ColumnFamilyOptions& FamilyOptions(const std::string& name);

  // The reopen's hooks (run with the DB held exclusively). Before: every store attached to the DB
  // (active, or closing in a Deactivate) stops its calls. After: each active partition takes its
  // families' new handles and its store checks it is the same store; a partition whose families the
  // reopened DB lacks makes it another DB (kDataLoss).
  void SuspendStores();
  absl::Status AdoptReopened(rocksdb::DB* db);

  absl::Status PrepareDirectoryFor();

  // A family gets idem's record options (its expiry filter, FIFO's drop by age) only if it IS a records
  // family: named exactly RecordsFamilyName(p) for a partition name p the set accepts. Partition names
  // hold no ':', so "p:<name>:0" has exactly two, and an effect family ("p:<name>:<i>:<family>", three
  // or more, whatever its own name holds, "0" and "x:0" included) can never take that shape.
  rocksdb::ColumnFamilyOptions OptionsForFamily(const std::string& name) const;

  absl::Status LoadMarkers();

  // REQUIRES: a Pin, mu_ held, markers loaded. Drops, in one call, the partition families no marker
  // names: prepared and never used, or created just before a crash (the marker is written next).
  absl::Status DropUnmarkedFamilies();

  absl::Status WriteMarker(const std::string& name, const engine::Marker& marker);

  // REQUIRES: a Pin, mu_ held (or Open). Creates the partition's families that do not exist yet.
  absl::StatusOr<std::vector<rocksdb::ColumnFamilyHandle*>> EnsureFamilies(const PartitionLayout& layout);

  // REQUIRES: a Pin, mu_ held. The partition's families for what comes next (`state`): its local copy kept
  // (`keep_copy`: the caller checked it) or dropped, the missing families created, its marker written
  // (markers_ is the caller's to update once the step succeeds).
  absl::StatusOr<std::vector<rocksdb::ColumnFamilyHandle*>> PrepareFamilies(const PartitionLayout& layout,
                                                                            bool keep_copy, engine::CopyState state);

  // REQUIRES: a Pin, mu_ held (or Open). Drops a partition's families, its store metadata and its marker.
  absl::Status DropFamilies(const std::string& partition, const std::vector<std::string>& effect_families);
  // REQUIRES: a Pin, mu_ held. The same for several copies, in one RocksDB call and one marker write.
  absl::Status DropCopies(const std::vector<PartitionLayout>& copies);

  std::vector<std::shared_ptr<engine::PartitionImpl>> Active() const;

  void Maintain();

  PartitionSetOptions options_;
  const std::string path_;
  std::shared_ptr<rocksdb::Cache> cache_;
  std::shared_ptr<engine::HealthListener> health_;
  std::shared_ptr<engine::DiskGuard> disk_guard_;
  std::unique_ptr<engine::StoreClaim> claim_;
  std::unique_ptr<rocksdb::Env> env_;  // the caller's (or the default) file system, directories shared
  // After env_ (closed before it), before the partitions (which point to it).
  std::unique_ptr<engine::DbLifecycle> lifecycle_;

  rocksdb::DBOptions db_options_;
  engine::FilesBudgetCheck files_budget_{0, std::chrono::seconds(0)};
  // As first opened or created. Touched under a Pin (families created, dropped) or by the opener, which
  // runs with the DB held exclusively.
  std::map<std::string, rocksdb::ColumnFamilyOptions> cf_options_;
  mutable std::mutex mu_;
  bool closed_ = false;
  absl::Status close_status_;
  std::map<std::string, engine::Marker> markers_;  // local copies and active partitions
  std::map<std::string, std::shared_ptr<engine::PartitionImpl>> active_;
  // Deactivated or closed partitions, kept until the set is destroyed: a caller may still hold one.
  std::vector<std::shared_ptr<engine::PartitionImpl>> retired_;
  std::set<std::string> restoring_;
  // Being deactivated: out of active_, their stores closing. Close closes them too before the DB goes.
  std::map<std::string, std::shared_ptr<engine::PartitionImpl>> deactivating_;
  uint64_t restore_counter_ = 0;
  uint64_t fenced_closed_ = 0;
  PartitionSetStats stats_;

  std::unique_ptr<util::Periodic> maintenance_;
  std::unique_ptr<util::Periodic> disk_watch_;
};

}  // namespace idem

#endif  // IDEM_ENGINE_PARTITIONS_PARTITION_SET_IMPL_H_
