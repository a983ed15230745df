#include "engine/hold_table.h"

#include <utility>

#include "engine/memory_tables.h"
#include "engine/printable.h"
#include "engine/record.h"

namespace idem::engine {
namespace {

class DurableHolds : public HoldTable {
 public:
  bool persists_holds() const override { return true; }
  void ObserveTime() const override {}
  void Hold(size_t /*stripe*/, std::string_view id, const HeldLease& hold, absl::Duration /*lease*/,
            rocksdb::ColumnFamilyHandle* cf, rocksdb::WriteBatch* batch) override {
    Record record;
    record.state = RecordState::kReserved;
    record.deadline_us = ToMicros(hold.deadline);
    record.token = hold.token;
    record.fingerprint = hold.fingerprint;
    batch->Put(cf, AsSlice(id), EncodeRecord(record)).PermitUncheckedError();  // an unlimited batch of ours
  }
  std::optional<HeldLease> Find(size_t, std::string_view) override { return std::nullopt; }
  void Renew(size_t, std::string_view, absl::Time) override {}
  bool Drop(size_t, std::string_view) override { return false; }
  void CommitOutcomeUnknown(size_t, std::string_view) override {}  // Commit re-reads the record anyway
};

class MemoryHolds : public HoldTable {
 public:
  MemoryHolds(const StoreTime* time, const Clock* clock, absl::Duration lease, CommitLanded landed)
      : time_(time), clock_(clock), lease_(lease), landed_(std::move(landed)) {}

  bool persists_holds() const override { return false; }
  void ObserveTime() const override { time_->Monotonic(*clock_); }

  void Hold(size_t stripe, std::string_view id, const HeldLease& hold, absl::Duration lease,
            rocksdb::ColumnFamilyHandle* /*cf*/, rocksdb::WriteBatch* /*batch*/) override {
    const absl::Duration now = time_->Monotonic(*clock_);
    leases_.Put(stripe, id, Lease{hold.token, hold.deadline, now + lease, hold.fingerprint}, now);
  }

  std::optional<HeldLease> Find(size_t stripe, std::string_view id) override {
    Lease* lease = leases_.Find(stripe, id);
    if (lease == nullptr) return std::nullopt;
    // A commit under this lease may have landed (a failed fsync's write is replayed from the WAL by the
    // reopen). If RocksDB holds it, the lease is over: the ID is done, and a retried Commit must find it
    // so and write nothing. If not, the lease stands (the store refuses writes until it has recovered,
    // and after recovery RocksDB's answer is final).
    if (lease->commit_outcome_unknown && landed_(stripe, id, lease->token)) {
      leases_.Erase(stripe, id);
      return std::nullopt;
    }
    return HeldLease{lease->token, lease->deadline, lease->fingerprint, lease->ends_at <= time_->Monotonic(*clock_)};
  }

  void Renew(size_t stripe, std::string_view id, absl::Time deadline) override {
    if (Lease* lease = leases_.Find(stripe, id)) {
      lease->deadline = deadline;
      lease->ends_at = time_->Monotonic(*clock_) + lease_;
    }
  }

  bool Drop(size_t stripe, std::string_view id) override {
    const bool held = leases_.Find(stripe, id) != nullptr;
    if (held) leases_.Erase(stripe, id);
    return held;
  }

  void CommitOutcomeUnknown(size_t stripe, std::string_view id) override {
    if (Lease* lease = leases_.Find(stripe, id)) lease->commit_outcome_unknown = true;
  }

 private:
  const StoreTime* const time_;
  const Clock* const clock_;
  const absl::Duration lease_;
  const CommitLanded landed_;
  LeaseTable leases_;  // stripe i guarded by the caller's stripe i
};

}  // namespace

std::unique_ptr<HoldTable> NewDurableHolds() { return std::make_unique<DurableHolds>(); }

std::unique_ptr<HoldTable> NewMemoryHolds(const StoreTime* time, const Clock* clock, absl::Duration lease,
                                          CommitLanded landed) {
  return std::make_unique<MemoryHolds>(time, clock, lease, std::move(landed));
}

}  // namespace idem::engine
