// The restore thread: for an input partition just assigned, the Kafka I/O of taking it while the input
// partition stays paused — the committed offset and its metadata, the changelog's watermarks, its
// records fed in order, the claim produced and read back. What to read, what a record means and
// whether the claim counted are the partition layer's (idem/partition_owner.h: PlanRestore,
// PartitionRestore); a local copy refused as stale is dropped and the partition restored instead.
#ifndef IDEM_RUNTIME_KAFKA_PARTITION_RESTORER_H_
#define IDEM_RUNTIME_KAFKA_PARTITION_RESTORER_H_

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "idem/changelog.h"
#include "idem/partition_owner.h"
#include "idem/partition_set.h"
#include "runtime/kafka/changelog_producer.h"
#include "runtime/kafka/kafka_client.h"

namespace idem::kafka {

struct RestoreJob {
  int32_t partition = -1;
  PartitionLayout layout;
  std::shared_ptr<RecordTrack> track;  // the claim is tracked with the partition's records
  bool claim_it = true;                // false: restore only (verifiers, operators), no local copy used
  bool from_log_start = false;         // ignore the snapshot pointer: replay the whole log (audits)
  std::atomic<bool> cancel{false};

  // Filled in by the restore thread; `done` last.
  absl::Status status;
  ClaimId claim;                   // the claim this member now holds
  int64_t claim_offset = -1;       // its changelog offset
  int64_t committed = -1001;       // the group's committed input offset (RD_KAFKA_OFFSET_INVALID: none)
  std::string how;                 // "catch-up", "snapshot", "log", for logs
  uint64_t batches_fenced = 0;     // ignored by the replay: written under a superseded claim
  uint64_t batches_after_gap = 0;  // ignored by the replay: an earlier batch of their claim is missing
  bool claim_lost = false;
  bool caught_up = false;          // from the local copy, not a restore
  std::optional<int64_t> pointer;  // the snapshot pointer the committed metadata held
  uint64_t log_bytes = 0;          // changelog bytes read
  std::atomic<bool> done{false};
};

class PartitionRestorer {
 public:
  struct Config {
    std::string bootstrap_servers;
    std::string input_topic;
    std::string changelog_topic;  // empty: no changelog, the local copy or nothing
    Settings reader_settings;
    absl::Duration timeout = absl::Seconds(30);
  };
  // `group`: the member's consumer (for the committed offsets); `producer`: for the claims.
  static absl::StatusOr<std::unique_ptr<PartitionRestorer>> Create(Config config, PartitionSet* set, rd_kafka_t* group,
                                                                   ChangelogProducer* producer,
                                                                   std::function<void(std::string_view)> log);
  ~PartitionRestorer();

  void Submit(std::shared_ptr<RestoreJob> job);
  // Blocks until `job` is done (cancelled jobs end at their next record or wait).
  void Await(const RestoreJob& job);

 private:
  PartitionRestorer() = default;
  void Loop();
  void Run(RestoreJob& job);
  // Runs `plan` (idem/partition_owner.h): reads the changelog from plan.read_from to its end into a
  // PartitionRestore; then, when the job claims, produces the claim and reads on through it.
  absl::Status Replay(RestoreJob& job, const RestorePlan& plan);
  // Feeds `restore` the changelog partition's records from `from` until `until` (exclusive).
  absl::Status ReadRange(RestoreJob& job, PartitionRestore& restore, int64_t from, int64_t until);

  Config config_;
  PartitionSet* set_ = nullptr;
  rd_kafka_t* group_ = nullptr;
  ChangelogProducer* producer_ = nullptr;
  std::function<void(std::string_view)> log_;
  Client reader_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<RestoreJob>> queue_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace idem::kafka

#endif  // IDEM_RUNTIME_KAFKA_PARTITION_RESTORER_H_
