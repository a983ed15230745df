// The engine's own way into a Store, for a PartitionSet, which runs many stores on one DB and shares
// among them what each Store from Attach would otherwise make for itself: the listener for the DB's
// background errors (registered when the set opened the DB), the disk guard and its watch thread, and
// the maintenance thread (the set runs one for all of them).
//
// Thread safety: as the Store calls they stand for.
#ifndef IDEM_ENGINE_STORE_STORE_ACCESS_H_
#define IDEM_ENGINE_STORE_STORE_ACCESS_H_

#include <functional>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/db/db_lifecycle.h"
#include "engine/db/disk_guard.h"
#include "idem/store.h"

namespace idem::engine {

struct SharedStoreResources {
  std::shared_ptr<HealthListener> health;  // null: the store's own, unregistered
  std::shared_ptr<DiskGuard> disk_guard;   // null: the store's own (and its thread)
  // Store::Resume's recovery, when the DB's owner reopens it (DbLifecycle's shared_resume).
  std::function<absl::Status()> resume;
};

struct StoreAccess {
  // Store::Attach, with `shared` in place of the store's own listener and disk guard.
  static absl::StatusOr<std::unique_ptr<Store>> Attach(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf,
                                                       const Options& options, SharedStoreResources shared);
  // One maintenance pass (what the store's own thread would run every maintenance_interval).
  static absl::Status RunMaintenance(Store& store);
  // Runs `fn` while none of the store's commit hooks runs.
  static void WithCommitOrder(Store& store, const std::function<void()>& fn);
  // The DB's owner reopens it (DbLifecycle::Suspend / Adopt).
  static void Suspend(Store& store);
  static absl::Status Adopt(Store& store, rocksdb::DB* db, rocksdb::ColumnFamilyHandle* records);
};

}  // namespace idem::engine

#endif  // IDEM_ENGINE_STORE_STORE_ACCESS_H_
