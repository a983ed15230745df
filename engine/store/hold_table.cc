#include "engine/store/hold_table.h"

#include <utility>

#include "engine/records/record.h"
#include "engine/records/store_time.h"
#include "engine/store/memory_tables.h"

namespace idem::engine {
namespace {

class Holds : public HoldTable {
 public:
  Holds(bool durable, absl::Duration lease, CommitLanded landed)
      : durable_(durable), lease_(lease), landed_(std::move(landed)) {}

  bool persists_holds() const override { return durable_; }

  void Hold(const IdKey& key, const HeldLease& hold, absl::Duration lease, absl::Duration monotonic_now,
            rocksdb::ColumnFamilyHandle* cf, const rocksdb::Slice& record_key, rocksdb::WriteBatch* batch) override {
    // The store looked (Find) under the same stripe lock and dropped any hold it found.
    leases_.Insert(key, Lease{hold.token, hold.deadline, monotonic_now + lease, hold.fingerprint}, monotonic_now);
    if (!durable_) return;
    Record record;
    record.state = RecordState::kReserved;
    record.deadline_us = ToMicros(hold.deadline);
    record.token = hold.token;
    record.fingerprint = hold.fingerprint;
    batch->Put(cf, record_key, EncodeRecord(record)).PermitUncheckedError();  // an unlimited batch of ours
  }

  std::optional<HeldLease> Find(const IdKey& key, absl::Duration monotonic_now) override {
    Lease* lease = leases_.Find(key);
    if (lease == nullptr) return std::nullopt;
    // A commit under this lease may have landed (a failed fsync's write is replayed from the WAL by the
    // reopen). If RocksDB holds it, the lease is over: the ID is done, and a retried Commit must find it
    // so and write nothing. If not, the lease stands (the store refuses writes until it has recovered,
    // and after recovery RocksDB's answer is final).
    if (lease->commit_outcome_unknown && landed_(key, lease->token)) {
      leases_.Erase(key);
      return std::nullopt;
    }
    return HeldLease{lease->token, lease->deadline, lease->fingerprint, lease->ends_at <= monotonic_now};
  }

  void Renew(const IdKey& key, absl::Time deadline, absl::Duration monotonic_now) override {
    if (Lease* lease = leases_.Find(key)) {
      lease->deadline = deadline;
      lease->ends_at = monotonic_now + lease_;
    }
  }

  bool Drop(const IdKey& key) override { return leases_.Erase(key); }

  void CommitOutcomeUnknown(const IdKey& key) override {
    if (Lease* lease = leases_.Find(key)) lease->commit_outcome_unknown = true;
  }

 private:
  const bool durable_;
  const absl::Duration lease_;
  const CommitLanded landed_;
  LeaseTable leases_;  // stripe i guarded by the caller's stripe i
};

}  // namespace

std::unique_ptr<HoldTable> NewHoldTable(bool durable, absl::Duration lease, CommitLanded landed) {
  return std::make_unique<Holds>(durable, lease, std::move(landed));
}

}  // namespace idem::engine
