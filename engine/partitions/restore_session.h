// The set's side of a restore: a partition's fresh (or kept) families being written by a changelog
// replay, pinned to the DB they were created on. PartitionRestore (idem/partition_owner.h) drives one;
// PartitionSet::Restore and CatchUp run one around a feed callback.
#ifndef IDEM_ENGINE_PARTITIONS_RESTORE_SESSION_H_
#define IDEM_ENGINE_PARTITIONS_RESTORE_SESSION_H_

#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "idem/changelog.h"
#include "idem/partition_set.h"

namespace idem::engine {

// Thread-compatible: one thread feeds it. It must end (Finish, or destruction) before its set is
// destroyed; a Close or a reopen meanwhile makes every later write fail with kUnavailable.
class RestoreSession {
 public:
  // Destroyed without a successful Finish: aborted — the partition's families are dropped (a local
  // copy being caught up too), and it is neither active nor a copy.
  virtual ~RestoreSession() = default;
  // What the replay writes into: snapshot entries by SST ingestion, batches as writes.
  virtual ChangelogReplayer::Sink* sink() = 0;
  // The replay ended well: the partition becomes a clean local copy (kRestored), to be activated with
  // use_local_copy. kUnavailable when the set closed or reopened its DB meanwhile (the session is then
  // aborted at destruction), kFailedPrecondition when it was closed.
  virtual absl::Status Finish() = 0;
};

struct PartitionSetAccess {
  // Begins restoring `layout` into fresh families (onto_local_copy false: any local copy is dropped
  // first) or onto its clean local copy. Errors as PartitionSet::Restore / CatchUp before their feed.
  static absl::StatusOr<std::unique_ptr<RestoreSession>> BeginRestore(PartitionSet& set, const PartitionLayout& layout,
                                                                      bool onto_local_copy);
};

}  // namespace idem::engine

#endif  // IDEM_ENGINE_PARTITIONS_RESTORE_SESSION_H_
