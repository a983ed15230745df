// Store::Impl's inspection and operator calls (Peek, InDoubt, Forget) and expiry maintenance: they read
// or remove records but take no part in the reserve/commit protocol.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/records/record_scan.h"
#include "engine/store/store_impl.h"
#include "rocksdb/write_batch.h"
#include "util/printable.h"
#include "util/status_util.h"

namespace idem {

using engine::FromMicros;
using engine::Record;
using engine::RecordState;

absl::Status Store::Impl::Forget(std::string_view id) {
  if (absl::Status s = CheckId(id); !s.ok()) return s;
  Operation op(*lifecycle_);
  if (!op.ok()) return op.status();
  const engine::IdKey key = engine::KeyLocks::KeyOf(id);
  util::MutexLock lock(locks_.At(key.stripe));
  bool held = holds_->Drop(key);
  recent_.Erase(key);
  absl::StatusOr<Lookup> lookup = Read(key, /*count_fast_path=*/false);
  // A record that does not decode is exactly what an operator forgets, so it is not decoded here.
  if (lookup.ok() && lookup->found) {
    rocksdb::WriteBatch batch;
    batch.Delete(cf(), engine::RecordKey(layout_, id, key.hash).slice());
    if (absl::Status s = WriteCommitted(&batch, "forgetting", id); !s.ok()) return s;
    held = true;
  } else if (!lookup.ok()) {
    return lookup.status();
  }
  locks_.Changed(key.stripe).notify_all();
  if (!held) return absl::NotFoundError(absl::StrCat("nothing stored for '", util::Printable(id), "'"));
  return absl::OkStatus();
}

absl::StatusOr<RecordInfo> Store::Impl::Peek(std::string_view id) const {
  if (absl::Status s = CheckId(id); !s.ok()) return s;
  Operation op(*lifecycle_);
  if (!op.ok()) return op.status();
  const Instant at = Clocks();
  const absl::Time now = at.now;
  const engine::IdKey key = engine::KeyLocks::KeyOf(id);
  {
    auto* self = const_cast<Impl*>(this);  // the hold table is read under its stripe
    util::MutexLock lock(self->locks_.At(key.stripe));
    if (std::optional<engine::HeldLease> lease = self->holds_->Find(key, at.monotonic)) {
      return RecordInfo{RecordInfo::State::kReserved, lease->token, lease->deadline, {}, lease->ended};
    }
  }
  absl::StatusOr<Lookup> lookup = Read(key, /*count_fast_path=*/false);
  if (!lookup.ok()) return lookup.status();
  if (!lookup->found) return absl::NotFoundError(absl::StrCat("no record for '", util::Printable(id), "'"));
  absl::StatusOr<Record> record = DecodeStored(id, lookup->value, /*count_corrupt=*/false);
  if (!record.ok()) return record.status();
  RecordInfo info;
  info.state = record->state == RecordState::kDone ? RecordInfo::State::kDone : RecordInfo::State::kReserved;
  info.token = record->token;
  info.deadline = FromMicros(record->deadline_us);
  info.result = std::string(record->result);
  info.expired = info.deadline <= now;
  return info;
}

absl::StatusOr<std::vector<InDoubtReservation>> Store::Impl::InDoubt(size_t limit) const {
  Operation op(*lifecycle_);
  if (!op.ok()) return op.status();
  std::vector<InDoubtReservation> found;
  if (limit == 0) return found;
  // Expired ones are included, and this process's own: the caller tells them apart by token (a token
  // below TokenFloor() was issued before this Store opened; its holder is gone).
  absl::Status scanned =
      engine::ScanRecords(db(), cf(), layout_, engine::ToMicros(Now()), [&](const engine::ScannedRecord& r) {
        if (r.record.ok() && r.record->state == RecordState::kReserved) {
          found.push_back({std::string(r.id), r.record->token, FromMicros(r.record->deadline_us)});
        }
        return found.size() < limit;
      });
  if (!scanned.ok()) return scanned;
  return found;
}

// ---------------------------------------------------------------------------------------------------
// Expiry and maintenance

absl::Status Store::Impl::CompactExpired() {
  Operation op(*lifecycle_);
  if (!op.ok()) return op.status();
  return expiry_.CompactExpired(db(), cf());
}

absl::Status Store::Impl::RunMaintenance() {
  Operation op(*lifecycle_);
  if (!op.ok()) return op.status();
  if (absl::Status s = expiry_.RunPass(db(), cf()); !s.ok()) return s;
  expiry_.Nudge(db(), cf());
  return absl::OkStatus();
}

}  // namespace idem
