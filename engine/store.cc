#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <filesystem>
#include <limits>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/strings/str_format.h"
#include "engine/effects_check.h"
#include "engine/rocksdb_options.h"
#include "engine/status_util.h"
#include "engine/store_impl.h"
#include "engine/wal_scan.h"
#include "rocksdb/write_batch.h"

namespace idem {

using engine::FromMicros;
using engine::Record;
using engine::RecordState;
using engine::ToMicros;

namespace {

std::string Printable(std::string_view id) {
  constexpr size_t kShown = 64;
  std::string out;
  for (char c : id.substr(0, kShown)) {
    if (c >= 0x20 && c < 0x7f) {
      out.push_back(c);
    } else {
      absl::StrAppendFormat(&out, "\\x%02x", static_cast<unsigned char>(c));
    }
  }
  if (id.size() > kShown) absl::StrAppend(&out, "...");
  return out;
}

rocksdb::Slice AsSlice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }

class LatencyTimer {
 public:
  explicit LatencyTimer(engine::LatencyHistogram* histogram)
      : histogram_(histogram), start_(std::chrono::steady_clock::now()) {}
  ~LatencyTimer() {
    histogram_->Record(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start_).count()));
  }

 private:
  engine::LatencyHistogram* histogram_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Construction and lifecycle

Store::Impl::Impl(const Options& options, std::shared_ptr<engine::ExpiryFilterFactory> filter)
    : options_(options),
      clock_(engine::ClockOf(options)),
      filter_(std::move(filter)),
      durable_reservations_(options.durable_reservations),
      recent_(options.recent_commits_cache_entries),
      memtable_max_deadline_us_(std::numeric_limits<int64_t>::min()) {
  write_options_.sync = options.sync;
}

Store::Impl::~Impl() { Close().IgnoreError(); }

absl::Status Store::Impl::LoadMetadata(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* records,
                                       engine::IfMissing if_missing) {
  engine::MetadataLocation where{db->DefaultColumnFamily(), engine::MetadataKey(records->GetName())};
  absl::StatusOr<engine::StoreMetadata> metadata = engine::LoadMetadata(db, where, records, if_missing);
  if (!metadata.ok()) return metadata.status();
  if (!identity_.empty() && metadata->identity != identity_) {
    return absl::DataLossError("the DB reopened is not this store (another store's identity)");
  }
  identity_ = metadata->identity;
  metadata_ = where;
  tokens_ = std::make_unique<engine::TokenSource>(db, std::move(where), *std::move(metadata));
  return absl::OkStatus();
}

absl::Status Store::Impl::Start(std::unique_ptr<engine::DbLifecycle> lifecycle,
                                std::unique_ptr<engine::StoreClaim> claim, const std::string& directory,
                                engine::IfMissing if_missing) {
  lifecycle_ = std::move(lifecycle);
  claim_ = std::move(claim);
  disk_guard_ = engine::DiskGuard::For(
      directory, engine::DiskReserveFor(options_.min_free_disk_bytes, options_.write_buffer_size));
  filter_->SetClock(clock_);
  Now();  // the store's time starts at its clock's reading now
  if (absl::Status s = LoadMetadata(db(), cf(), if_missing); !s.ok()) return s;
  lifecycle_->SetHooks(
      [this](const engine::OpenedDb& opened) {
        // A reopen must find this very store: a deleted directory is refused by the opener (it never
        // creates), a replaced one by its identity.
        absl::Status s = LoadMetadata(opened.db.get(), opened.records, engine::IfMissing::kRefuse);
        if (s.code() == absl::StatusCode::kNotFound || s.code() == absl::StatusCode::kDataLoss) {
          return absl::DataLossError(absl::StrCat(
              "the store's directory no longer holds this store (", s.message(),
              "): it was deleted or replaced; refusing to go on with an empty store, which would admit every "
              "remembered ID again"));
        }
        if (s.ok()) counters_.reopens.fetch_add(1, std::memory_order_relaxed);
        return s;
      },
      [this](rocksdb::DB* db) {
        // Whatever the periodic sync had not reached yet is made durable at a clean close. Not after a
        // write error: syncing a WAL writer that failed trips RocksDB's previous-error assertion.
        if (!wal_sync_ || options_.sync || !lifecycle_->Health().ok()) return absl::OkStatus();
        return engine::FromRocks(db->SyncWAL(), "syncing the WAL");
      });
  if (disk_guard_ != nullptr) {
    disk_watch_ = std::make_unique<engine::Periodic>(absl::Milliseconds(100), [this] { disk_guard_->Measure(); });
  }
  if (options_.maintenance_interval > absl::ZeroDuration()) {
    maintenance_ = std::make_unique<engine::Periodic>(options_.maintenance_interval, [this] {
      RunMaintenance().IgnoreError();  // failures surface through Health() and the next foreground call
      NudgePeriodicCompaction();
    });
  }
  if (!options_.sync && options_.wal_sync_interval > absl::ZeroDuration()) {
    wal_sync_ = std::make_unique<engine::Periodic>(options_.wal_sync_interval, [this] {
      Operation op(*lifecycle_);
      if (!op.ok() || !lifecycle_->Health().ok()) return;  // see BeforeClose: never sync a failed WAL
      if (rocksdb::Status s = db()->SyncWAL(); !s.ok()) StorageError(s, "periodic WAL sync").IgnoreError();
    });
  }
  return absl::OkStatus();
}

absl::Status Store::Impl::Close() {
  if (lifecycle_ == nullptr) return absl::OkStatus();  // Start never ran
  lifecycle_->BeginClose();  // calls are turned away from here on
  std::lock_guard<std::mutex> lock(stop_mu_);
  if (maintenance_) maintenance_->Stop();
  if (wal_sync_) wal_sync_->Stop();
  if (disk_watch_) disk_watch_->Stop();
  absl::Status closed = lifecycle_->Close();
  claim_.reset();  // only once the DB is closed may another Store open the directory
  return closed;
}

// ---------------------------------------------------------------------------------------------------
// Input checks, reads, writes

absl::Status Store::Impl::CheckId(std::string_view id) const {
  if (id.empty()) return absl::InvalidArgumentError("event ID must not be empty");
  if (id.size() > options_.max_id_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("event ID is ", id.size(), " bytes; max_id_bytes is ",
                                                   options_.max_id_bytes));
  }
  return absl::OkStatus();
}

absl::Status Store::Impl::CheckToken(uint64_t token) const {
  if (token == 0) return absl::InvalidArgumentError("token 0 is never issued");
  return absl::OkStatus();
}

absl::Status Store::Impl::CheckCommit(const CommitRequest& request) const {
  if (absl::Status s = CheckId(request.id); !s.ok()) return s;
  if (absl::Status s = CheckToken(request.token); !s.ok()) return s;
  if (request.result.size() > options_.max_result_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("result is ", request.result.size(),
                                                   " bytes; max_result_bytes is ", options_.max_result_bytes));
  }
  return absl::OkStatus();
}

absl::Status Store::Impl::CheckEffectsOf(const CommitRequest& request) const {
  if (request.effects == nullptr) return absl::OkStatus();
  engine::ProtectedWrites protect;
  protect.records_cf = cf()->GetID();
  protect.metadata_cf = metadata_.cf->GetID();
  protect.metadata_prefix = engine::kMetadataKeyPrefix;
  return engine::CheckEffects(*request.effects, protect);
}

absl::StatusOr<Store::Impl::Lookup> Store::Impl::Read(std::string_view id, bool count_fast_path) const {
  Lookup lookup;
  rocksdb::ReadOptions no_io;
  no_io.read_tier = rocksdb::kBlockCacheTier;
  rocksdb::Status s = db()->Get(no_io, cf(), AsSlice(id), &lookup.value);
  if (s.IsIncomplete()) {
    s = db()->Get(rocksdb::ReadOptions(), cf(), AsSlice(id), &lookup.value);
  } else if (s.IsNotFound() && count_fast_path) {
    counters_.fast_path_hits.fetch_add(1, std::memory_order_relaxed);
  }
  if (s.ok()) {
    lookup.found = true;
    return lookup;
  }
  if (s.IsNotFound()) return lookup;
  counters_.storage_errors.fetch_add(1, std::memory_order_relaxed);
  return engine::FromRocks(s, absl::StrCat("reading '", Printable(id), "'"));
}

absl::Status Store::Impl::StorageError(const rocksdb::Status& status, std::string_view context) {
  counters_.storage_errors.fetch_add(1, std::memory_order_relaxed);
  absl::Status error = engine::FromRocks(status, context);
  if (status.IsIOError() || status.IsNoSpace()) lifecycle_->ReportWriteError(error);
  return error;
}

absl::Status Store::Impl::Write(rocksdb::WriteBatch* batch, std::string_view verb, std::string_view id) {
  if (disk_guard_ != nullptr) {
    if (absl::Status s = disk_guard_->CheckWrite(batch->GetDataSize()); !s.ok()) return s;  // nothing written
  }
  const rocksdb::Status s = db()->Write(write_options_, batch);
  if (s.ok()) return absl::OkStatus();
  // The message is built only on failure: the hot path allocates nothing for it.
  return StorageError(s, absl::StrCat(engine::ToAbsl(verb), " '", Printable(id),
                                      "' (outcome unknown: it may have reached the WAL)"));
}

void Store::Impl::NoteMemtableDeadline(int64_t deadline_us) {
  int64_t seen = memtable_max_deadline_us_.load(std::memory_order_relaxed);
  while (deadline_us > seen &&
         !memtable_max_deadline_us_.compare_exchange_weak(seen, deadline_us, std::memory_order_relaxed)) {
  }
  if (!memtable_dirty_.load(std::memory_order_relaxed)) memtable_dirty_.store(true, std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------------------------------
// Check-and-reserve

absl::StatusOr<Record> Store::Impl::DecodeStored(std::string_view id, std::string_view bytes,
                                                 bool count_corrupt) const {
  absl::StatusOr<Record> record = engine::DecodeRecord(bytes);
  if (record.ok()) return record;
  if (count_corrupt) counters_.corrupt_records.fetch_add(1, std::memory_order_relaxed);
  return absl::DataLossError(absl::StrCat("record of '", Printable(id), "': ", record.status().message()));
}

Record Store::Impl::DoneRecord(uint64_t token, std::optional<uint64_t> fingerprint, std::string_view result,
                               absl::Time now) const {
  Record done;
  done.state = RecordState::kDone;
  done.deadline_us = ToMicros(now + options_.ttl);
  done.token = token;
  done.fingerprint = fingerprint;
  done.result = result;
  return done;
}

std::optional<Reservation> Store::Impl::ConflictOf(const std::optional<uint64_t>& wanted,
                                                   const std::optional<uint64_t>& stored, absl::Time deadline,
                                                   std::string_view result) {
  if (!wanted || !stored || *wanted == *stored) return std::nullopt;
  counters_.conflicts.fetch_add(1, std::memory_order_relaxed);
  return Reservation{Verdict::kConflict, 0, deadline, std::string(result), false};
}

std::optional<Reservation> Store::Impl::AnswerFromMemory(size_t shard, std::string_view id,
                                                         const std::optional<uint64_t>& fingerprint, absl::Time now,
                                                         bool* takeover) {
  // A lease is newer than any cached commit of the same ID (Reserve erases the cache entry), so it is
  // looked at first.
  if (engine::Lease* lease = durable_reservations_ ? nullptr : FindLease(shard, id)) {
    if (lease->ends_at > MonotonicNow()) {
      if (auto conflict = ConflictOf(fingerprint, lease->fingerprint, lease->deadline, {})) return conflict;
      counters_.in_flight.fetch_add(1, std::memory_order_relaxed);
      return Reservation{Verdict::kInFlight, 0, lease->deadline, {}, false};
    }
    leases_.Erase(shard, id);
    *takeover = true;
    return std::nullopt;
  }
  if (const engine::RecentCommit* done = recent_.Find(shard, id, now)) {
    if (auto conflict = ConflictOf(fingerprint, done->fingerprint, done->deadline, done->result)) return conflict;
    counters_.duplicate.fetch_add(1, std::memory_order_relaxed);
    return Reservation{Verdict::kDuplicate, 0, done->deadline, done->result, false};
  }
  return std::nullopt;
}

absl::StatusOr<Reservation> Store::Impl::Decide(size_t shard, std::string_view id,
                                                const std::optional<uint64_t>& fingerprint, const Lookup& lookup,
                                                absl::Time now, bool takeover, rocksdb::WriteBatch* batch) {
  Reservation reservation;
  reservation.takeover = takeover;
  if (lookup.found) {
    absl::StatusOr<Record> record = DecodeStored(id, lookup.value, /*count_corrupt=*/true);
    if (!record.ok()) return record.status();
    const absl::Time deadline = FromMicros(record->deadline_us);
    if (deadline > now) {
      if (auto conflict = ConflictOf(fingerprint, record->fingerprint, deadline, record->result)) return *conflict;
      reservation.deadline = deadline;
      if (record->state == RecordState::kDone) {
        reservation.verdict = Verdict::kDuplicate;
        // Not cached here: the cache holds what this process committed recently (where redeliveries
        // cluster); filling it from reads would churn it on every old duplicate.
        reservation.result = std::string(record->result);
        counters_.duplicate.fetch_add(1, std::memory_order_relaxed);
      } else {
        reservation.verdict = Verdict::kInFlight;
        counters_.in_flight.fetch_add(1, std::memory_order_relaxed);
      }
      return reservation;
    }
    // Past its deadline: the record reads as absent. A reservation that ran out is a takeover.
    reservation.takeover |= record->state == RecordState::kReserved;
  }
  // A new reservation leads to a write (its own, or the Commit's): none while the disk is nearly full.
  if (disk_guard_ != nullptr) {
    if (absl::Status s = disk_guard_->CheckWrite(0); !s.ok()) return s;
  }
  absl::StatusOr<uint64_t> token = tokens_->Next();
  if (!token.ok()) {
    counters_.storage_errors.fetch_add(1, std::memory_order_relaxed);
    return token.status();
  }
  reservation.verdict = Verdict::kReserved;
  reservation.token = *token;
  reservation.deadline = now + options_.lease;
  // An expired commit of this ID may still be cached; after a backward clock jump it would read as
  // live again and contradict this newer reservation.
  recent_.Erase(shard, id);
  if (durable_reservations_) {
    Record record;
    record.state = RecordState::kReserved;
    record.deadline_us = ToMicros(reservation.deadline);
    record.token = *token;
    record.fingerprint = fingerprint;
    batch->Put(cf(), AsSlice(id), engine::EncodeRecord(record));
  } else {
    const absl::Duration monotonic_now = MonotonicNow();
    leases_.Put(shard, id, engine::Lease{*token, reservation.deadline, monotonic_now + options_.lease, fingerprint},
                monotonic_now);
  }
  return reservation;
}

absl::StatusOr<Reservation> Store::Impl::ReserveLocked(size_t shard, std::string_view id,
                                                       const std::optional<uint64_t>& fingerprint, absl::Time now) {
  bool takeover = false;
  if (std::optional<Reservation> answer = AnswerFromMemory(shard, id, fingerprint, now, &takeover)) {
    return *std::move(answer);
  }
  absl::StatusOr<Lookup> lookup = Read(id, /*count_fast_path=*/true);
  if (!lookup.ok()) return lookup.status();
  rocksdb::WriteBatch batch;
  absl::StatusOr<Reservation> reservation = Decide(shard, id, fingerprint, *lookup, now, takeover, &batch);
  if (!reservation.ok() || reservation->verdict != Verdict::kReserved) return reservation;
  if (durable_reservations_) {
    if (absl::Status s = Write(&batch, "reserving", id); !s.ok()) return s;
    NoteMemtableDeadline(ToMicros(reservation->deadline));
  }
  counters_.reserved.fetch_add(1, std::memory_order_relaxed);
  if (reservation->takeover) counters_.takeovers.fetch_add(1, std::memory_order_relaxed);
  return reservation;
}

absl::StatusOr<Reservation> Store::Impl::Reserve(std::string_view id, const ReserveOptions& options) {
  if (absl::Status s = CheckId(id); !s.ok()) return s;
  Operation op(*lifecycle_);
  if (!op.ok()) return op.status();
  LatencyTimer timer(&reserve_latency_);
  const size_t shard = locks_.StripeOf(id);
  std::unique_lock<std::mutex> lock(locks_.At(shard)->native());
  const auto give_up = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(options.wait);
  for (;;) {
    const absl::Time now = Now();
    absl::StatusOr<Reservation> reservation = ReserveLocked(shard, id, options.fingerprint, now);
    if (!reservation.ok() || reservation->verdict != Verdict::kInFlight || options.wait <= absl::ZeroDuration()) {
      return reservation;
    }
    const auto real_now = std::chrono::steady_clock::now();
    if (real_now >= give_up) return reservation;
    // Sleep until the holder commits or releases (Changed is notified), its lease ends, or we give up.
    const auto lease_left = absl::ToChronoNanoseconds(std::max(reservation->deadline - now, absl::Milliseconds(1)));
    counters_.in_flight.fetch_sub(1, std::memory_order_relaxed);  // not returned: answered again below
    counters_.waits.fetch_add(1, std::memory_order_relaxed);
    locks_.Changed(shard).wait_until(lock, std::min(give_up, real_now + lease_left));
  }
}

std::vector<absl::StatusOr<Reservation>> Store::Impl::ReserveBatch(absl::Span<const std::string_view> ids) {
  std::vector<absl::StatusOr<Reservation>> results(ids.size(), absl::UnknownError("not evaluated"));
  Operation op(*lifecycle_);
  if (!op.ok()) {
    for (auto& r : results) r = op.status();
    return results;
  }
  LatencyTimer timer(&reserve_latency_);

  // The first occurrence of each valid ID is evaluated; later occurrences answer from the first.
  std::vector<size_t> firsts;  // indices into ids
  absl::flat_hash_map<absl::string_view, size_t> first_index;
  std::vector<size_t> stripes;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (absl::Status s = CheckId(ids[i]); !s.ok()) {
      results[i] = s;
      continue;
    }
    if (first_index.emplace(engine::ToAbsl(ids[i]), i).second) {
      firsts.push_back(i);
      stripes.push_back(locks_.StripeOf(ids[i]));
    }
  }
  engine::KeyLocks::Group lock(&locks_, stripes);
  const absl::Time now = Now();

  // Memory first; what it cannot answer is read with one MultiGet. Not with a no-I/O MultiGet first, as
  // single reads do: in RocksDB 7.8, MultiGet with read_tier = kBlockCacheTier answered OK with an empty
  // value for a record that was fine (found by the crash-torture test), and in a probe it read from disk
  // anyway; an answer it gives without honouring the tier cannot be trusted for a verdict.
  std::vector<size_t> to_read;  // positions in firsts
  std::vector<char> takeover(firsts.size(), 0);
  for (size_t k = 0; k < firsts.size(); ++k) {
    bool t = false;
    if (std::optional<Reservation> answer = AnswerFromMemory(stripes[k], ids[firsts[k]], std::nullopt, now, &t)) {
      results[firsts[k]] = *std::move(answer);
    } else {
      to_read.push_back(k);
    }
    takeover[k] = t;
  }
  const size_t n = to_read.size();
  std::vector<rocksdb::Slice> keys(n);
  for (size_t r = 0; r < n; ++r) keys[r] = AsSlice(ids[firsts[to_read[r]]]);
  std::vector<rocksdb::PinnableSlice> values(n);
  std::vector<rocksdb::Status> statuses(n);
  if (n > 0) db()->MultiGet(rocksdb::ReadOptions(), cf(), n, keys.data(), values.data(), statuses.data());

  rocksdb::WriteBatch batch;
  std::vector<size_t> reserved;  // indices into ids
  for (size_t r = 0; r < n; ++r) {
    const size_t k = to_read[r];
    const size_t i = firsts[k];
    Lookup lookup;
    if (statuses[r].ok()) {
      lookup.found = true;
      lookup.value.assign(values[r].data(), values[r].size());
    } else if (!statuses[r].IsNotFound()) {
      counters_.storage_errors.fetch_add(1, std::memory_order_relaxed);
      results[i] = engine::FromRocks(statuses[r], absl::StrCat("reading '", Printable(ids[i]), "'"));
      continue;
    }
    results[i] = Decide(stripes[k], ids[i], std::nullopt, lookup, now, takeover[k] != 0, &batch);
    if (results[i].ok() && results[i]->verdict == Verdict::kReserved) reserved.push_back(i);
  }
  if (durable_reservations_ && !reserved.empty()) {
    if (absl::Status s = Write(&batch, "reserving a batch including", ids[reserved[0]]); !s.ok()) {
      for (size_t i : reserved) results[i] = s;
      reserved.clear();
    } else {
      NoteMemtableDeadline(ToMicros(now + options_.lease));
    }
  }
  for (size_t i : reserved) {
    counters_.reserved.fetch_add(1, std::memory_order_relaxed);
    if (results[i]->takeover) counters_.takeovers.fetch_add(1, std::memory_order_relaxed);
  }
  // Repeats within the batch: a reservation made by the first occurrence is in flight for the others.
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!CheckId(ids[i]).ok()) continue;
    const size_t first = first_index[engine::ToAbsl(ids[i])];
    if (first == i) continue;
    if (!results[first].ok()) {
      results[i] = results[first].status();
      continue;
    }
    Reservation repeat = *results[first];
    if (repeat.verdict == Verdict::kReserved) repeat = Reservation{Verdict::kInFlight, 0, repeat.deadline, {}, false};
    (repeat.verdict == Verdict::kDuplicate ? counters_.duplicate : counters_.in_flight)
        .fetch_add(1, std::memory_order_relaxed);
    results[i] = std::move(repeat);
  }
  return results;
}

// ---------------------------------------------------------------------------------------------------
// Commit, Release, Extend

absl::Status Store::Impl::AbortedFor(std::string_view id, uint64_t token, std::string_view verb,
                                     std::string_view why) {
  counters_.lease_lost.fetch_add(1, std::memory_order_relaxed);
  return absl::AbortedError(absl::StrCat("cannot ", engine::ToAbsl(verb), " '", Printable(id), "' with token ",
                                         token, ": ", engine::ToAbsl(why)));
}

absl::StatusOr<Store::Impl::Hold> Store::Impl::FindHold(size_t shard, std::string_view id, uint64_t token,
                                                        std::string_view verb, absl::Time now) {
  Hold hold;
  if (!durable_reservations_) {
    if (engine::Lease* lease = FindLease(shard, id)) {
      if (lease->token != token) {
        return AbortedFor(id, token, verb, absl::StrCat("the ID is held by token ", lease->token,
                                                        " (the lease was lost or the token is not this ID's)"));
      }
      hold.in_memory = true;
      hold.fingerprint = lease->fingerprint;
      return hold;
    }
  }
  if (const engine::RecentCommit* done = recent_.Find(shard, id, now)) {
    if (done->token != token) {
      return AbortedFor(id, token, verb, absl::StrCat("the ID was committed by token ", done->token));
    }
    hold.done = true;
    return hold;
  }
  absl::StatusOr<Lookup> lookup = Read(id, /*count_fast_path=*/false);
  if (!lookup.ok()) return lookup.status();
  if (!lookup->found) return AbortedFor(id, token, verb, "no reservation (released, expired or never made)");
  absl::StatusOr<Record> record = DecodeStored(id, lookup->value, /*count_corrupt=*/true);
  if (!record.ok()) return record.status();
  if (record->state == RecordState::kDone && FromMicros(record->deadline_us) <= now) {
    // Past its retention the record reads as absent, here as in Reserve: the ID may be new again.
    return AbortedFor(id, token, verb, "the ID's commit has expired (past its ttl)");
  }
  if (record->token != token) {
    return AbortedFor(id, token, verb, absl::StrCat("the ID is held by token ", record->token,
                                                    " (the lease was lost or the token is not this ID's)"));
  }
  hold.done = record->state == RecordState::kDone;
  hold.fingerprint = record->fingerprint;
  hold.record = *record;
  hold.record.result = {};  // points into lookup, which dies here
  return hold;
}

void Store::Impl::NoteCommitOutcomeUnknown(size_t shard, std::string_view id) {
  if (durable_reservations_) return;  // durable: Commit re-reads the record, which tells the truth
  if (engine::Lease* lease = leases_.Find(shard, id)) lease->commit_outcome_unknown = true;
}

engine::Lease* Store::Impl::FindLease(size_t shard, std::string_view id) {
  engine::Lease* lease = leases_.Find(shard, id);
  if (lease == nullptr || !lease->commit_outcome_unknown) return lease;
  // A commit under this lease may have landed (a failed fsync's write is replayed from the WAL by the
  // reopen). If RocksDB holds it, the lease is over: the ID is done, and a retried Commit must find it
  // so and write nothing. If not, the lease stands (the store refuses writes until it has recovered,
  // and after recovery RocksDB's answer is final).
  absl::StatusOr<Lookup> lookup = Read(id, /*count_fast_path=*/false);
  if (!lookup.ok() || !lookup->found) return lease;
  absl::StatusOr<Record> record = engine::DecodeRecord(lookup->value);
  if (!record.ok() || record->state != RecordState::kDone || record->token != lease->token) return lease;
  recent_.Put(shard, id, record->token, FromMicros(record->deadline_us), record->fingerprint, record->result);
  leases_.Erase(shard, id);
  return nullptr;
}

void Store::Impl::NoteCommitted(size_t shard, const CommitRequest& request, const Record& done) {
  if (!durable_reservations_) leases_.Erase(shard, request.id);
  locks_.Changed(shard).notify_all();
  recent_.Put(shard, request.id, request.token, FromMicros(done.deadline_us), done.fingerprint, request.result);
  NoteMemtableDeadline(done.deadline_us);
  counters_.committed.fetch_add(1, std::memory_order_relaxed);
}

absl::Status Store::Impl::Commit(std::string_view id, uint64_t token, std::string_view result,
                                 rocksdb::WriteBatch* effects) {
  const CommitRequest request{id, token, result, effects};
  if (absl::Status s = CheckCommit(request); !s.ok()) return s;
  Operation op(*lifecycle_);
  if (!op.ok()) return op.status();
  if (absl::Status s = CheckEffectsOf(request); !s.ok()) return s;
  LatencyTimer timer(&commit_latency_);
  const size_t shard = locks_.StripeOf(id);
  engine::MutexLock lock(locks_.At(shard));
  const absl::Time now = Now();

  absl::StatusOr<Hold> hold = FindHold(shard, id, token, "commit", now);
  if (!hold.ok()) return hold.status();
  // Same token, already done: a repeated Commit (e.g. a retry after an ambiguous error that did land).
  if (hold->done) return absl::OkStatus();

  const Record done = DoneRecord(token, hold->fingerprint, result, now);
  const std::string encoded = engine::EncodeRecord(done);
  absl::Status status;
  if (effects != nullptr) {
    // The marker rides in the caller's batch so effects and marker land in one atomic write; the save
    // point hands the batch back exactly as the caller built it. A batch that refuses the marker (one
    // built with a byte limit) must not be written: its effects would land without the marker and the
    // redelivery would apply them again.
    effects->SetSavePoint();
    if (const rocksdb::Status added = effects->Put(cf(), AsSlice(id), encoded); !added.ok()) {
      effects->RollbackToSavePoint().PermitUncheckedError();
      return absl::InvalidArgumentError(absl::StrCat(
          "cannot commit '", Printable(id), "': the effects batch refused the done marker (",
          added.ToString(), "); nothing was written, the reservation still holds"));
    }
    status = Write(effects, "committing", id);
    effects->RollbackToSavePoint().PermitUncheckedError();
  } else {
    rocksdb::WriteBatch batch;
    batch.Put(cf(), AsSlice(id), encoded);
    status = Write(&batch, "committing", id);
  }
  if (!status.ok()) {
    NoteCommitOutcomeUnknown(shard, id);
    return status;
  }
  NoteCommitted(shard, request, done);
  return absl::OkStatus();
}

namespace {

// Appends the records of `src` to a WriteBatch representation under construction. The representation
// is RocksDB's WAL format: a 12-byte header (8-byte sequence, 4-byte little-endian count) and then the
// records, so batches concatenate by appending records and adding the counts.
constexpr size_t kBatchHeader = 12;
void AppendRecords(const rocksdb::WriteBatch& src, std::string* rep, uint32_t* count) {
  rep->append(src.Data(), kBatchHeader, std::string::npos);
  *count += src.Count();
}
rocksdb::WriteBatch BatchFrom(std::string rep, uint32_t count) {
  for (int i = 0; i < 4; ++i) rep[8 + i] = static_cast<char>(count >> (8 * i));
  return rocksdb::WriteBatch(std::move(rep));
}

}  // namespace

std::vector<absl::Status> Store::Impl::CommitBatch(absl::Span<const CommitRequest> requests) {
  std::vector<absl::Status> results(requests.size());
  Operation op(*lifecycle_);
  if (!op.ok()) {
    for (auto& r : results) r = op.status();
    return results;
  }
  LatencyTimer timer(&commit_latency_);
  std::vector<size_t> stripes(requests.size());
  std::vector<size_t> valid;
  absl::flat_hash_map<absl::string_view, size_t> seen;
  for (size_t i = 0; i < requests.size(); ++i) {
    results[i] = CheckCommit(requests[i]);
    if (results[i].ok()) results[i] = CheckEffectsOf(requests[i]);
    if (results[i].ok() && !seen.emplace(engine::ToAbsl(requests[i].id), i).second) {
      results[i] = absl::InvalidArgumentError(
          absl::StrCat("'", Printable(requests[i].id), "' appears twice in one CommitBatch"));
    }
    if (!results[i].ok()) continue;
    stripes[i] = locks_.StripeOf(requests[i].id);
    valid.push_back(i);
  }
  std::vector<size_t> held_stripes;
  for (size_t i : valid) held_stripes.push_back(stripes[i]);
  engine::KeyLocks::Group lock(&locks_, std::move(held_stripes));
  const absl::Time now = Now();

  std::string rep(kBatchHeader, '\0');
  uint32_t count = 0;
  rocksdb::WriteBatch markers;
  std::vector<std::pair<size_t, Record>> to_commit;
  for (size_t i : valid) {
    const CommitRequest& request = requests[i];
    absl::StatusOr<Hold> hold = FindHold(stripes[i], request.id, request.token, "commit", now);
    if (!hold.ok()) {
      results[i] = hold.status();
      continue;
    }
    if (hold->done) continue;  // a repeat: OK, nothing to write
    const Record done = DoneRecord(request.token, hold->fingerprint, request.result, now);
    if (request.effects != nullptr) AppendRecords(*request.effects, &rep, &count);
    markers.Put(cf(), AsSlice(request.id), engine::EncodeRecord(done));
    to_commit.emplace_back(i, done);
  }
  if (to_commit.empty()) return results;
  AppendRecords(markers, &rep, &count);
  rocksdb::WriteBatch batch = BatchFrom(std::move(rep), count);
  if (absl::Status s = Write(&batch, "committing a batch including", requests[to_commit[0].first].id); !s.ok()) {
    for (const auto& [i, done] : to_commit) {
      results[i] = s;
      NoteCommitOutcomeUnknown(stripes[i], requests[i].id);
    }
    return results;
  }
  for (const auto& [i, done] : to_commit) NoteCommitted(stripes[i], requests[i], done);
  return results;
}

absl::Status Store::Impl::Release(std::string_view id, uint64_t token) {
  if (absl::Status s = CheckId(id); !s.ok()) return s;
  if (absl::Status s = CheckToken(token); !s.ok()) return s;
  Operation op(*lifecycle_);
  if (!op.ok()) return op.status();
  const size_t shard = locks_.StripeOf(id);
  engine::MutexLock lock(locks_.At(shard));

  absl::StatusOr<Hold> hold = FindHold(shard, id, token, "release", Now());
  if (!hold.ok()) return hold.status();
  if (hold->done) {
    return absl::FailedPreconditionError(absl::StrCat("cannot release '", Printable(id), "': already committed"));
  }
  if (hold->in_memory) {
    leases_.Erase(shard, id);
  } else {
    rocksdb::WriteBatch batch;
    batch.Delete(cf(), AsSlice(id));
    if (absl::Status s = Write(&batch, "releasing", id); !s.ok()) return s;
  }
  locks_.Changed(shard).notify_all();
  counters_.released.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status Store::Impl::Extend(std::string_view id, uint64_t token) {
  if (absl::Status s = CheckId(id); !s.ok()) return s;
  if (absl::Status s = CheckToken(token); !s.ok()) return s;
  Operation op(*lifecycle_);
  if (!op.ok()) return op.status();
  const size_t shard = locks_.StripeOf(id);
  engine::MutexLock lock(locks_.At(shard));
  const absl::Time now = Now();

  absl::StatusOr<Hold> hold = FindHold(shard, id, token, "extend", now);
  if (!hold.ok()) return hold.status();
  if (hold->done) {
    return absl::FailedPreconditionError(absl::StrCat("cannot extend '", Printable(id), "': already committed"));
  }
  if (hold->in_memory) {
    engine::Lease* lease = leases_.Find(shard, id);
    lease->deadline = now + options_.lease;
    lease->ends_at = MonotonicNow() + options_.lease;
  } else {
    Record renewed = hold->record;
    renewed.deadline_us = ToMicros(now + options_.lease);
    rocksdb::WriteBatch batch;
    batch.Put(cf(), AsSlice(id), engine::EncodeRecord(renewed));
    if (absl::Status s = Write(&batch, "extending", id); !s.ok()) return s;
    NoteMemtableDeadline(renewed.deadline_us);
  }
  counters_.extended.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status Store::Impl::Forget(std::string_view id) {
  if (absl::Status s = CheckId(id); !s.ok()) return s;
  Operation op(*lifecycle_);
  if (!op.ok()) return op.status();
  const size_t shard = locks_.StripeOf(id);
  engine::MutexLock lock(locks_.At(shard));
  bool held = false;
  if (!durable_reservations_ && leases_.Find(shard, id) != nullptr) {
    leases_.Erase(shard, id);
    held = true;
  }
  recent_.Erase(shard, id);
  absl::StatusOr<Lookup> lookup = Read(id, /*count_fast_path=*/false);
  // A record that does not decode is exactly what an operator forgets, so it is not decoded here.
  if (lookup.ok() && lookup->found) {
    rocksdb::WriteBatch batch;
    batch.Delete(cf(), AsSlice(id));
    if (absl::Status s = Write(&batch, "forgetting", id); !s.ok()) return s;
    held = true;
  } else if (!lookup.ok()) {
    return lookup.status();
  }
  locks_.Changed(shard).notify_all();
  if (!held) return absl::NotFoundError(absl::StrCat("nothing stored for '", Printable(id), "'"));
  return absl::OkStatus();
}

absl::StatusOr<RecordInfo> Store::Impl::Peek(std::string_view id) const {
  if (absl::Status s = CheckId(id); !s.ok()) return s;
  Operation op(*lifecycle_);
  if (!op.ok()) return op.status();
  const absl::Time now = Now();
  if (!durable_reservations_) {
    const size_t shard = locks_.StripeOf(id);
    auto* self = const_cast<Impl*>(this);  // the lease table is read under its stripe, not modified
    engine::MutexLock lock(self->locks_.At(shard));
    if (const engine::Lease* lease = self->FindLease(shard, id)) {
      return RecordInfo{RecordInfo::State::kReserved, lease->token, lease->deadline, {},
                        lease->ends_at <= MonotonicNow()};
    }
  }
  absl::StatusOr<Lookup> lookup = Read(id, /*count_fast_path=*/false);
  if (!lookup.ok()) return lookup.status();
  if (!lookup->found) return absl::NotFoundError(absl::StrCat("no record for '", Printable(id), "'"));
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
  std::unique_ptr<rocksdb::Iterator> it(db()->NewIterator(rocksdb::ReadOptions(), cf()));
  for (it->SeekToFirst(); it->Valid() && found.size() < limit; it->Next()) {
    if (it->key().empty()) continue;  // metadata
    absl::StatusOr<Record> record = engine::DecodeRecord(std::string_view(it->value().data(), it->value().size()));
    if (!record.ok() || record->state != RecordState::kReserved) continue;
    found.push_back({it->key().ToString(), record->token, FromMicros(record->deadline_us)});
  }
  if (!it->status().ok()) return engine::FromRocks(it->status(), "listing reservations in doubt");
  return found;
}

// ---------------------------------------------------------------------------------------------------
// Expiry and maintenance

absl::Status Store::Impl::CompactExpired() {
  Operation op(*lifecycle_);
  if (!op.ok()) return op.status();
  const int64_t called_us = ToMicros(Now());
  // A background compaction that began before this call judged expiry by its own, earlier time, and a
  // manual compaction that overlaps it only waits for it: its output can still hold records that had
  // expired by now (found by the fuzzer: an automatic L0 compaction at open, still running, moved every
  // file to the bottom level under an old time). So compact, check the files' deadline ranges, and
  // compact again while a file still holds a record that expired before this call.
  for (int attempt = 0;; ++attempt) {
    rocksdb::FlushOptions flush;
    flush.wait = true;
    memtable_max_deadline_us_.store(std::numeric_limits<int64_t>::min(), std::memory_order_relaxed);
    memtable_dirty_.store(false, std::memory_order_relaxed);
    if (rocksdb::Status s = db()->Flush(flush, cf()); !s.ok()) return StorageError(s, "flushing before compaction");
    rocksdb::CompactRangeOptions compact;
    compact.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
    compact.exclusive_manual_compaction = false;
    if (rocksdb::Status s = db()->CompactRange(compact, cf(), nullptr, nullptr); !s.ok()) {
      return StorageError(s, "compacting expired records");
    }
    rocksdb::TablePropertiesCollection tables;
    if (rocksdb::Status s = db()->GetPropertiesOfAllTables(cf(), &tables); !s.ok()) {
      return StorageError(s, "reading table properties");
    }
    bool stale = false;
    for (const auto& [file, properties] : tables) {
      std::optional<engine::DeadlineRange> range = engine::DeadlineRangeOf(*properties);
      stale = stale || (range && range->min_us <= called_us);
    }
    // The second pass starts after the conflicting work ended, so it judges every file by a time after the
    // call. (FIFO never rewrites files, and a caller's snapshot can pin records: no point repeating.)
    if (!stale || attempt == 1 || options_.compaction == CompactionProfile::kFifo) return absl::OkStatus();
  }
}

absl::Status Store::Impl::RunMaintenance() {
  Operation op(*lifecycle_);
  if (!op.ok()) return op.status();
  const int64_t now_us = ToMicros(Now());

  // 1. A memtable whose records have all expired: flushing it runs the filter, which drops them all.
  if (memtable_dirty_.load(std::memory_order_relaxed) &&
      memtable_max_deadline_us_.load(std::memory_order_relaxed) <= now_us) {
    memtable_max_deadline_us_.store(std::numeric_limits<int64_t>::min(), std::memory_order_relaxed);
    memtable_dirty_.store(false, std::memory_order_relaxed);
    rocksdb::FlushOptions flush;
    flush.wait = true;
    if (rocksdb::Status s = db()->Flush(flush, cf()); !s.ok()) return StorageError(s, "maintenance flush");
  }

  // 2. SST files whose records have all expired (their deadline range says so without reading them):
  //    compact their key range, bottom level included, so the filter removes them.
  rocksdb::TablePropertiesCollection tables;
  if (rocksdb::Status s = db()->GetPropertiesOfAllTables(cf(), &tables); !s.ok()) {
    return StorageError(s, "reading table properties");
  }
  std::vector<std::string> due_files;
  for (const auto& [file, properties] : tables) {
    std::optional<engine::DeadlineRange> range = engine::DeadlineRangeOf(*properties);
    if (range && range->max_us <= now_us) due_files.push_back(std::filesystem::path(file).filename().string());
  }
  if (!due_files.empty()) {
    std::vector<rocksdb::LiveFileMetaData> live;
    db()->GetLiveFilesMetaData(&live);
    std::optional<std::string> smallest, largest;
    for (const rocksdb::LiveFileMetaData& meta : live) {
      if (meta.column_family_name != options_.column_family) continue;
      const std::string name = std::filesystem::path(meta.name).filename().string();
      if (std::find(due_files.begin(), due_files.end(), name) == due_files.end()) continue;
      if (!smallest || meta.smallestkey < *smallest) smallest = meta.smallestkey;
      if (!largest || meta.largestkey > *largest) largest = meta.largestkey;
    }
    if (smallest && largest) {
      rocksdb::CompactRangeOptions compact;
      compact.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForceOptimized;
      compact.exclusive_manual_compaction = false;
      const rocksdb::Slice begin(*smallest), end(*largest);
      if (rocksdb::Status s = db()->CompactRange(compact, cf(), &begin, &end); !s.ok()) {
        return StorageError(s, "maintenance compaction");
      }
    }
  }
  return absl::OkStatus();
}

void Store::Impl::NudgePeriodicCompaction() {
  // RocksDB 7.8 evaluates periodic compaction only when a new version is installed; on an idle DB a
  // no-op SetOptions is what makes it look at file ages again (ROCKSDB.md §2.3).
  const absl::Time real_now = absl::Now();
  if (options_.compaction == CompactionProfile::kFifo || real_now - last_nudge_ < absl::Minutes(10)) return;
  last_nudge_ = real_now;
  Operation op(*lifecycle_);
  if (!op.ok()) return;
  const uint64_t period = db()->GetOptions(cf()).periodic_compaction_seconds;
  db()->SetOptions(cf(), {{"periodic_compaction_seconds", std::to_string(period)}}).PermitUncheckedError();
}

// ---------------------------------------------------------------------------------------------------
// Stats and health

Stats Store::Impl::GetStats() const {
  Stats stats;
  auto get = [](const std::atomic<uint64_t>& c) { return c.load(std::memory_order_relaxed); };
  stats.reserved = get(counters_.reserved);
  stats.duplicate = get(counters_.duplicate);
  stats.in_flight = get(counters_.in_flight);
  stats.takeovers = get(counters_.takeovers);
  stats.conflicts = get(counters_.conflicts);
  stats.waits = get(counters_.waits);
  stats.reopens = get(counters_.reopens);
  stats.committed = get(counters_.committed);
  stats.released = get(counters_.released);
  stats.extended = get(counters_.extended);
  stats.lease_lost = get(counters_.lease_lost);
  stats.fast_path_hits = get(counters_.fast_path_hits);
  stats.corrupt_records = get(counters_.corrupt_records);
  stats.storage_errors = get(counters_.storage_errors);
  if (disk_guard_ != nullptr) {
    stats.disk_refusals = disk_guard_->refusals();
    stats.disk_free_bytes = disk_guard_->free_bytes();
  }
  stats.expired_removed = filter_->removed();
  stats.reserve_latency = reserve_latency_.Summary();
  stats.commit_latency = commit_latency_.Summary();
  return stats;
}

absl::Status Store::Impl::Health() const {
  Operation op(*lifecycle_);
  if (!op.ok()) return op.status();
  if (absl::Status s = lifecycle_->Health(); !s.ok()) return s;
  return disk_guard_ != nullptr ? disk_guard_->Health() : absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------------
// Store: Open, Attach and forwarding

namespace {

absl::Status OpenError(const rocksdb::Status& s, const std::string& path) {
  const std::string text = s.ToString();
  // Permanent conditions an operator must fix: retrying (kUnavailable) would never end.
  if (s.IsIOError() && text.find("Permission denied") != std::string::npos) {
    return absl::PermissionDeniedError(absl::StrCat("opening idem store at '", path, "': ", text));
  }
  if (s.IsIOError() && text.find("Read-only file system") != std::string::npos) {
    return absl::FailedPreconditionError(absl::StrCat("opening idem store at '", path, "': ", text));
  }
  if (s.IsIOError() && text.find("lock") != std::string::npos) {
    return absl::UnavailableError(
        absl::StrCat("idem store at '", path, "' is held by another process (", s.ToString(), ")"));
  }
  if (s.IsCorruption()) {
    return absl::DataLossError(absl::StrCat(
        "opening idem store at '", path, "': ", s.ToString(),
        ". The WAL or another file is corrupt before its end: opening anyway would forget the acknowledged "
        "commits after the damage. `idemctl recover ", path, "` opens it anyway and lists what was dropped"));
  }
  return engine::FromRocks(s, absl::StrCat("opening idem store at '", path, "'"));
}

// Makes sure `path` can hold a store, like `mkdir -p` when creating, with codes by what the caller should
// do next: a path that cannot be a directory is kInvalidArgument (fix the path), a permission problem is
// kPermissionDenied and a read-only file system kFailedPrecondition (an operator must act; retrying
// will not help), anything else kUnavailable (it may pass).
absl::Status PrepareDirectory(const std::string& path, bool create) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec) && !std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(absl::StrCat("store path '", path, "' exists and is not a directory"));
  }
  if (create && !std::filesystem::is_directory(path, ec)) {
    std::filesystem::create_directories(path, ec);
  }
  int error = ec ? ec.value() : 0;
  if (error == 0 && std::filesystem::is_directory(path, ec) && ::access(path.c_str(), R_OK | W_OK | X_OK) != 0) {
    error = errno;
  }
  if (error == 0) return absl::OkStatus();
  const std::string why = absl::StrCat("store directory '", path, "': ", std::strerror(error));
  switch (error) {
    case ENOTDIR:
    case EEXIST:
    case ENAMETOOLONG:
    case ELOOP:
      return absl::InvalidArgumentError(why);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(why);
    case EROFS:
      return absl::FailedPreconditionError(absl::StrCat(why, " (read-only file system)"));
    default:
      return absl::UnavailableError(why);
  }
}

// Whether `path` is a directory holding files RocksDB would not have written (a creation that failed
// half-way leaves LOCK, LOG, IDENTITY...: those are fine to create a store over).
bool HoldsForeignFiles(const std::string& path) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
    const std::string name = entry.path().filename().string();
    bool rocksdb_file = false;
    for (const char* prefix : {"LOCK", "LOG", "IDENTITY", "CURRENT", "OPTIONS-", "MANIFEST-"}) {
      rocksdb_file = rocksdb_file || absl::StartsWith(name, prefix);
    }
    for (const char* suffix : {".log", ".sst", ".dbtmp", ".blob"}) {
      rocksdb_file = rocksdb_file || absl::EndsWith(name, suffix);
    }
    if (!rocksdb_file) return true;
  }
  return false;
}

// Opening an existing store under another column-family name would start an empty store beside the real
// one, and every ID it remembers would look new. So when the named column family is missing from an
// existing DB, look for idem's metadata record in the others, and refuse if one of them is an idem store.
absl::Status RefuseOtherIdemLayout(const rocksdb::DBOptions& db_options, const std::string& path,
                                   const std::vector<std::string>& names, const std::string& wanted) {
  if (names.size() <= 1) return absl::OkStatus();  // only the default column family: a new store
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& name : names) descriptors.emplace_back(name, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::OpenForReadOnly(db_options, path, descriptors, &handles, &raw);
  if (!s.ok()) return absl::OkStatus();  // the real open below reports what is wrong
  std::unique_ptr<rocksdb::DB> db(raw);
  std::string found;
  for (rocksdb::ColumnFamilyHandle* handle : handles) {
    std::string value;
    if (!found.empty()) {
    } else if (handle->GetName() == rocksdb::kDefaultColumnFamilyName) {
      // Stores' metadata, keyed by their records column family.
      std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), handle));
      const rocksdb::Slice prefix(engine::kMetadataKeyPrefix.data(), engine::kMetadataKeyPrefix.size());
      for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix) && found.empty(); it->Next()) {
        const std::string name = it->key().ToString().substr(prefix.size());
        if (std::find(names.begin(), names.end(), name) != names.end()) found = name;
      }
    } else if (db->Get(rocksdb::ReadOptions(), handle, rocksdb::Slice(), &value).ok() &&
               engine::DecodeMeta(value).ok()) {
      found = handle->GetName();  // a store from before the metadata moved to the default column family
    }
    db->DestroyColumnFamilyHandle(handle).PermitUncheckedError();
  }
  if (found.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "the DB at '", path, "' holds an idem store in column family '", found, "', not '", wanted,
      "': opening it as '", wanted, "' would start an empty store and admit every remembered ID again; set "
      "Options::column_family = \"", found, "\""));
}

}  // namespace

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Store::~Store() = default;

absl::StatusOr<engine::OpenedDb> Store::Impl::OpenDb(const Options& options, const std::string& path,
                                                     std::shared_ptr<engine::ExpiryFilterFactory> filter,
                                                     std::shared_ptr<engine::HealthListener> health,
                                                     engine::IfMissing if_missing) {
  const bool create = if_missing == engine::IfMissing::kCreate;
  rocksdb::DBOptions db_options = engine::DBOptionsFor(options);
  db_options.create_if_missing = create;
  db_options.create_missing_column_families = create;
  db_options.listeners.push_back(std::move(health));
  std::vector<std::string> names;
  rocksdb::Status listed = rocksdb::DB::ListColumnFamilies(db_options, path, &names);
  if (!listed.ok()) {
    if (!create) {
      if (!listed.IsPathNotFound()) return OpenError(listed, path);  // e.g. an I/O error: may pass
      return absl::NotFoundError(absl::StrCat("no idem store at '", path, "' (", listed.ToString(), ")"));
    }
    // Not a RocksDB (yet). Creating one inside a directory that already holds other files would mix the
    // store with them, and more likely means a wrong path: refuse.
    if (options.env == nullptr && HoldsForeignFiles(path)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "'", path, "' is not an idem store: the directory holds other files and no RocksDB (", listed.ToString(),
          "); pass an empty or missing directory to create a store"));
    }
    names = {rocksdb::kDefaultColumnFamilyName};  // a new store
  }
  if (std::find(names.begin(), names.end(), options.column_family) == names.end()) {
    if (!create) {
      return absl::NotFoundError(
          absl::StrCat("'", path, "' holds no idem store in column family '", options.column_family, "'"));
    }
    if (absl::Status s = RefuseOtherIdemLayout(db_options, path, names, options.column_family); !s.ok()) return s;
    names.push_back(options.column_family);
  }
  rocksdb::ColumnFamilyOptions idem_cf = ColumnFamilyOptionsFor(options);
  idem_cf.compaction_filter_factory = std::move(filter);  // one factory for the store's whole life
  // The other column families (the default one holds idem's metadata) get small memtables: RocksDB
  // preallocates each WAL file at 1.1 x the largest write buffer of any column family, and the default
  // 64 MiB would reserve that much disk whatever Options::write_buffer_size says.
  rocksdb::ColumnFamilyOptions other_cf;
  other_cf.write_buffer_size = std::min<size_t>(options.write_buffer_size, 4 << 20);
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  size_t idem_index = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == options.column_family) {
      idem_index = i;
      descriptors.emplace_back(names[i], idem_cf);
    } else {
      descriptors.emplace_back(names[i], other_cf);
    }
  }
  if (options.env == nullptr && listed.ok()) {
    // RocksDB takes damage in the last block of a WAL for a torn tail and drops what follows quietly.
    if (absl::Status s = engine::CheckWalTails(path); !s.ok()) {
      return absl::DataLossError(absl::StrCat("opening idem store at '", path, "': ", s.message(), ". `idemctl recover ",
                                              path, "` opens it anyway and lists what was dropped"));
    }
  }
  engine::OpenedDb opened;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, path, descriptors, &opened.handles, &raw);
  if (!s.ok()) return OpenError(s, path);
  opened.db.reset(raw);
  opened.records = opened.handles[idem_index];
  return opened;
}

absl::Status Store::Impl::Resume() {
  if (absl::Status s = lifecycle_->Resume(); !s.ok()) return s;
  return disk_guard_ != nullptr ? disk_guard_->Health() : absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const Options& options, const std::string& path) {
  if (absl::Status s = engine::ValidateOptions(options); !s.ok()) return s;
  if (path.empty()) return absl::InvalidArgumentError("store path must not be empty");
  if (options.env == nullptr) {
    if (absl::Status s = PrepareDirectory(path, options.create_if_missing); !s.ok()) return s;
  }
  const engine::IfMissing if_missing = options.create_if_missing ? engine::IfMissing::kCreate
                                                                 : engine::IfMissing::kRefuse;
  absl::StatusOr<std::unique_ptr<engine::StoreClaim>> claim = engine::StoreClaim::ForOpen(path, options.env);
  if (!claim.ok()) return claim.status();
  auto health = std::make_shared<engine::HealthListener>();
  auto filter = std::make_shared<engine::ExpiryFilterFactory>(engine::ClockOf(options), engine::ShapeOf(options));
  absl::StatusOr<engine::OpenedDb> opened = Impl::OpenDb(options, path, filter, health, if_missing);
  if (!opened.ok()) return opened.status();
  (*claim)->Bind(opened->db.get(), options.column_family);
  // A reopen after a fatal error must find the same store: it never creates one.
  engine::DbLifecycle::Opener reopen = [options, path, filter, health]() -> absl::StatusOr<engine::OpenedDb> {
    absl::StatusOr<engine::OpenedDb> opened = Impl::OpenDb(options, path, filter, health, engine::IfMissing::kRefuse);
    if (opened.status().code() != absl::StatusCode::kNotFound) return opened;
    return absl::DataLossError(absl::StrCat(
        "the store's directory no longer holds this store (", opened.status().message(),
        "): it was deleted or replaced; refusing to go on with an empty store, which would admit every "
        "remembered ID again"));
  };
  auto impl = std::make_unique<Impl>(options, filter);
  absl::Status started = impl->Start(
      std::make_unique<engine::DbLifecycle>(*std::move(opened), std::move(reopen), std::move(health)),
      *std::move(claim), path, if_missing);
  if (!started.ok()) return started;
  return std::unique_ptr<Store>(new Store(std::move(impl)));
}

absl::StatusOr<std::unique_ptr<Store>> Store::Attach(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf,
                                                     const Options& options) {
  if (db == nullptr || cf == nullptr) return absl::InvalidArgumentError("Attach needs a DB and a column family");
  if (absl::Status s = engine::ValidateOptions(options); !s.ok()) return s;
  const rocksdb::ColumnFamilyOptions current = db->GetOptions(cf);
  auto filter = std::dynamic_pointer_cast<engine::ExpiryFilterFactory>(current.compaction_filter_factory);
  if (filter == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "column family '", cf->GetName(),
        "' was opened without idem's options (no idem expiry filter): pass ColumnFamilyOptionsFor(options) "
        "for it on every DB::Open, or expired IDs would never be removed"));
  }
  if (absl::Status s = engine::CheckColumnFamilyFor(current, filter->shape(), options, cf->GetName()); !s.ok()) {
    return s;
  }
  if (absl::Status s = engine::CheckMetadataColumnFamily(db, db->DefaultColumnFamily()); !s.ok()) return s;
  absl::StatusOr<std::unique_ptr<engine::StoreClaim>> claim =
      engine::StoreClaim::ForAttach(db->GetName(), db->GetEnv(), db, cf->GetName());
  if (!claim.ok()) return claim.status();
  Options attached = options;
  attached.column_family = cf->GetName();
  const engine::IfMissing if_missing = options.create_if_missing ? engine::IfMissing::kCreate
                                                                 : engine::IfMissing::kRefuse;
  auto impl = std::make_unique<Impl>(attached, std::move(filter));
  absl::Status started =
      impl->Start(std::make_unique<engine::DbLifecycle>(db, cf), *std::move(claim), db->GetName(), if_missing);
  if (!started.ok()) return started;
  return std::unique_ptr<Store>(new Store(std::move(impl)));
}

absl::StatusOr<Reservation> Store::Reserve(std::string_view id) { return impl_->Reserve(id, ReserveOptions()); }
absl::StatusOr<Reservation> Store::Reserve(std::string_view id, const ReserveOptions& options) {
  return impl_->Reserve(id, options);
}
absl::Status Store::Commit(std::string_view id, uint64_t token, std::string_view result,
                           rocksdb::WriteBatch* effects) {
  return impl_->Commit(id, token, result, effects);
}
absl::Status Store::Release(std::string_view id, uint64_t token) { return impl_->Release(id, token); }
absl::Status Store::Extend(std::string_view id, uint64_t token) { return impl_->Extend(id, token); }
std::vector<absl::StatusOr<Reservation>> Store::ReserveBatch(absl::Span<const std::string_view> ids) {
  return impl_->ReserveBatch(ids);
}
std::vector<absl::Status> Store::CommitBatch(absl::Span<const CommitRequest> requests) {
  return impl_->CommitBatch(requests);
}
absl::StatusOr<std::vector<InDoubtReservation>> Store::InDoubt(size_t limit) const { return impl_->InDoubt(limit); }
absl::StatusOr<RecordInfo> Store::Peek(std::string_view id) const { return impl_->Peek(id); }
absl::Status Store::Forget(std::string_view id) { return impl_->Forget(id); }
absl::Status Store::CompactExpired() { return impl_->CompactExpired(); }
Stats Store::GetStats() const { return impl_->GetStats(); }
absl::Status Store::Health() const { return impl_->Health(); }
absl::Status Store::Resume() { return impl_->Resume(); }
absl::Status Store::Close() { return impl_->Close(); }
rocksdb::DB* Store::db() const { return impl_->db(); }
rocksdb::ColumnFamilyHandle* Store::column_family() const { return impl_->cf(); }

}  // namespace idem
