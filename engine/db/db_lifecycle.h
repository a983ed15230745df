// The life of the RocksDB instance under a Store: open, health, recovery, close — one state machine in
// one place, outside the reserve/commit logic.
//
//            write error / background error: health turns unavailable (state stays kOpen)
//   kOpen ──Resume: DB::Resume fails on a DB we own──► kReopening ──reopened, same store──► kOpen
//     ▲                                                    │
//     └──────────────Resume: reopened────── kDown ◄────────┘ reopen failed, or another store
//   any state ──Close──► kClosed (final)
//
// The same machine runs a PartitionSet's DB, which holds many column families: families are created and
// dropped while it is open (a dropped family's handle stays valid until the DB closes or reopens, since
// a caller may still hold it), and a reopen first lets go of whatever borrows the DB outside a Pin (the
// BeforeReopen hook: the set suspends its partitions' stores) and afterwards hands the new handles out
// (OnReopen). generation() tells a long-running borrower (a restore) that the DB it began on is gone.
//
// Close always wins: once Close is called, calls are refused at once (kFailedPrecondition); a Resume
// that is reopening finishes first, and Close then closes whatever is open; nothing reopens after Close.
// A reopen never creates a store: the opener refuses a missing DB, and the OnReopen check (the store's
// identity) refuses a different one, leaving the lifecycle kDown with kDataLoss.
//
// Thread safety: every method may be called from any thread. A Pin keeps the DB open and its pointers
// valid while it lives; reopen and Close wait for pins to drain (calls are short; a Reserve that waits
// for an in-flight holder pins for up to its wait).
#ifndef IDEM_ENGINE_DB_DB_LIFECYCLE_H_
#define IDEM_ENGINE_DB_DB_LIFECYCLE_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "rocksdb/db.h"
#include "rocksdb/listener.h"
#include "util/sync.h"

namespace idem::engine {

// Tracks RocksDB's background-error state (installed on DBs that Store::Open owns) and the store's own
// write errors.
class HealthListener : public rocksdb::EventListener {
 public:
  void OnBackgroundError(rocksdb::BackgroundErrorReason reason, rocksdb::Status* status) override;
  void OnErrorRecoveryEnd(const rocksdb::BackgroundErrorRecoveryInfo& info) override;
  absl::Status error() const;
  // Records `status` (as kUnavailable unless OK) as the DB's health.
  void Set(absl::Status status);

 private:
  mutable util::Mutex mu_;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
};

// A DB as an open yields it.
struct OpenedDb {
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;  // every handle, destroyed before the DB closes
  rocksdb::ColumnFamilyHandle* records = nullptr;     // one of handles
};

class DbLifecycle {
 public:
  enum class State { kOpen, kReopening, kDown, kClosed };

  // Reopens the DB after a fatal error. Must never create a store: kNotFound when there is none (the
  // lifecycle then stays kDown with kDataLoss).
  using Opener = std::function<absl::StatusOr<OpenedDb>()>;
  // Runs after a reopen, with the DB exclusively held, before any call is let in: the store re-reads
  // its metadata, checks that this is the same store, and adopts the new handles. An error closes the
  // DB again and leaves the lifecycle kDown; kNotFound or kDataLoss (another store) as kDataLoss.
  using OnReopen = std::function<absl::Status(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* records)>;
  // Runs at Close, with the DB exclusively held, before it closes (e.g. a last WAL sync).
  using BeforeClose = std::function<absl::Status(rocksdb::DB*)>;
  // Runs at a reopen, with the DB exclusively held (no Pin is out, none is granted), before it closes:
  // what uses the DB without a Pin of this lifecycle lets go of it. It must not wait for a Pin.
  using BeforeReopen = std::function<void()>;
  struct Hooks {
    OnReopen on_reopen;
    BeforeReopen before_reopen;
    BeforeClose before_close;
  };

  // A DB that the lifecycle owns (Store::Open): it can reopen it.
  DbLifecycle(OpenedDb opened, Opener reopen, std::shared_ptr<HealthListener> health);
  // A caller's DB (Store::Attach): recovery is DB::Resume only; Close leaves the DB open. `health`: a
  // listener registered on the DB by whoever opened it (a PartitionSet), or null for one of our own,
  // which only sees the store's write errors. `shared_resume`: for a DB whose owner reopens it (a
  // PartitionSet, through Suspend and Adopt), what Resume does instead: the owner's recovery.
  DbLifecycle(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* records, std::shared_ptr<HealthListener> health = nullptr,
              std::function<absl::Status()> shared_resume = nullptr);
  ~DbLifecycle();
  DbLifecycle(const DbLifecycle&) = delete;
  DbLifecycle& operator=(const DbLifecycle&) = delete;

  // Before any call; not thread-safe with calls.
  void SetHooks(Hooks hooks);
  // What refusals name ("idem store", "the partition set"). Before any call.
  void SetSubject(std::string subject) { subject_ = std::move(subject); }

  // Keeps the DB open for one call. Refused (ok() false, status() says why) when closed
  // (kFailedPrecondition), reopening or down (kUnavailable, whatever took it down). kWaitForReopen waits
  // for a reopen of an owned DB in progress to end first (the caller must hold nothing a reopen's hooks
  // take); kNoWait refuses at once.
  enum class Wait { kNoWait, kWaitForReopen };
  class Pin {
   public:
    explicit Pin(const DbLifecycle& lifecycle, Wait wait = Wait::kNoWait);
    ~Pin();
    Pin(const Pin&) = delete;
    Pin& operator=(const Pin&) = delete;
    bool ok() const { return held_; }
    const absl::Status& status() const { return status_; }

   private:
    const DbLifecycle& lifecycle_;
    bool held_ = false;
    absl::Status status_;
  };

  // The DB's health: OK while it accepts writes (only meaningful under a Pin).
  absl::Status Health() const { return health_->error(); }
  // A write failed with `error` (I/O, no space): the DB is unhealthy until recovered.
  void ReportWriteError(const absl::Status& error) { health_->Set(error); }

  // Recovers from a background error: DB::Resume, and for an owned DB that RocksDB cannot resume (fatal
  // WAL/SST write errors), close and reopen (which replays the WAL). OK when healthy again;
  // kUnavailable while the fault persists; kDataLoss when the reopened directory is not this store
  // (deleted, replaced); kFailedPrecondition when closed.
  absl::Status Resume();

  // For a DB its owner reopens: waits for the calls in progress and refuses new ones (kUnavailable,
  // reopening) until Adopt hands over the reopened DB. After Close it does nothing.
  void Suspend();
  // The owner reopened the DB: the OnReopen hook runs (the store re-reads its metadata, checks that it
  // is the same store) and calls are let in again; an error leaves the lifecycle kDown with it.
  // kFailedPrecondition after Close.
  absl::Status Adopt(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* records);

  // From now on every call is refused (kFailedPrecondition); Close finishes the job. Lets the store turn
  // calls away while it stops its background threads.
  void BeginClose() { close_requested_.store(true, std::memory_order_release); }

  // Closes (an owned DB) and refuses every later call. Returns the first error RocksDB reported while
  // closing. Idempotent; concurrent calls all wait for the first.
  absl::Status Close();

  State state() const { return state_.load(std::memory_order_acquire); }

  // REQUIRES: a Pin is held (or the hooks are running). Replaced only by a reopen.
  rocksdb::DB* db() const { return db_; }
  rocksdb::ColumnFamilyHandle* records() const { return records_; }
  // REQUIRES: a Pin is held (or the hooks are running). The owned DB's open column family `name`, or
  // null (none, dropped, or a caller's DB).
  rocksdb::ColumnFamilyHandle* handle(std::string_view name) const;
  // REQUIRES: a Pin is held. The names of the owned DB's open column families.
  std::vector<std::string> FamilyNames() const;
  // REQUIRES: a Pin is held. +1 at every close or reopen: a borrower that noted it can tell that the
  // handles it took are gone.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

  // REQUIRES: a Pin is held; an owned DB. Creates column family `name` (kAlreadyExists when it is open),
  // or RocksDB's error (kUnavailable for I/O: the outcome is unknown, the next open shows it).
  absl::StatusOr<rocksdb::ColumnFamilyHandle*> CreateFamily(const std::string& name,
                                                            const rocksdb::ColumnFamilyOptions& options);
  // The same for several families in one RocksDB call: RocksDB rewrites (and re-reads) its OPTIONS file,
  // which lists every family of the DB, once per call rather than once per family. On an error, the
  // families created before it stay (handle() finds them).
  absl::StatusOr<std::vector<rocksdb::ColumnFamilyHandle*>> CreateFamilies(
      const std::vector<rocksdb::ColumnFamilyDescriptor>& families);
  // REQUIRES: a Pin is held; an owned DB. Drops column family `name` (OK when there is none). Its handle
  // stays valid until the DB closes or reopens.
  absl::Status DropFamily(std::string_view name);
  // The same for several families in one RocksDB call (one OPTIONS rewrite). On an error (I/O: the DB is
  // then unhealthy, and a reopen shows what was dropped) every handle stays listed.
  absl::Status DropFamilies(const std::vector<std::string>& names);

 private:
  absl::Status RefusalFor(State state) const;
  absl::Status Reopen() ABSL_EXCLUSIVE_LOCKS_REQUIRED(transition_mu_);
  absl::Status CloseOwned() ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);
  void TakeOwned(OpenedDb opened) ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);

  std::string subject_ = "idem store";
  const Opener reopen_;  // empty for a caller's DB
  const std::shared_ptr<HealthListener> health_;
  const std::function<absl::Status()> shared_resume_;  // a DB its owner reopens
  Hooks hooks_;

  std::atomic<State> state_{State::kOpen};
  std::atomic<bool> close_requested_{false};

  // Serializes Resume and Close: one transition at a time. Mutable: a waiting Pin passes through it.
  mutable util::Mutex transition_mu_;
  absl::Status close_status_ ABSL_GUARDED_BY(transition_mu_);

  // Held shared by every Pin, exclusively while the DB is replaced or closed.
  mutable util::SharedMutex db_mu_;
  std::unique_ptr<rocksdb::DB> owned_db_ ABSL_GUARDED_BY(db_mu_);  // null for a caller's DB
  // The owned DB's handles: written under a Pin (families created or dropped) and at reopen and close.
  mutable util::Mutex families_mu_;
  std::map<std::string, rocksdb::ColumnFamilyHandle*, std::less<>> families_ ABSL_GUARDED_BY(families_mu_);
  std::vector<rocksdb::ColumnFamilyHandle*> dropped_ ABSL_GUARDED_BY(families_mu_);
  std::atomic<uint64_t> generation_{0};
  // Read under a Pin (shared db_mu_), written with db_mu_ held exclusively.
  rocksdb::DB* db_ = nullptr;
  rocksdb::ColumnFamilyHandle* records_ = nullptr;
  mutable util::Mutex down_mu_;
  absl::Status down_status_ ABSL_GUARDED_BY(down_mu_);
};

}  // namespace idem::engine

#endif  // IDEM_ENGINE_DB_DB_LIFECYCLE_H_
