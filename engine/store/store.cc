// Store::Impl's reserve/commit state machine: Reserve, Commit, Release, Extend and their batch forms,
// and the reads, decisions and writes they share. Construction, lifecycle and statistics are in
// store_open.cc; inspection, Forget and expiry maintenance in store_inspect.cc.
#include <algorithm>
#include <chrono>
#include <deque>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "engine/db/rocksdb_options.h"
#include "engine/store/batch_concat.h"
#include "engine/store/effects_check.h"
#include "engine/store/latency_timer.h"
#include "engine/store/perf_counters.h"
#include "engine/store/store_impl.h"
#include "rocksdb/write_batch.h"
#include "util/printable.h"
#include "util/status_util.h"

namespace idem {

using engine::FromMicros;
using engine::Record;
using engine::RecordState;
using engine::ToMicros;

namespace {

// Scratch space for encoding a record and for a single-record write, reused by the thread so that a
// Commit allocates nothing for them (a cleared WriteBatch keeps its buffer).
std::string& EncodeBuffer() {
  thread_local std::string buffer;
  return buffer;
}
rocksdb::WriteBatch& ScratchBatch() {
  thread_local rocksdb::WriteBatch batch;
  return batch;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Input checks, reads, writes

absl::Status Store::Impl::CheckId(std::string_view id) const {
  if (id.empty()) return absl::InvalidArgumentError("event ID must not be empty");
  if (id.size() > options_.max_id_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("event ID is ", id.size(), " bytes; max_id_bytes is ", options_.max_id_bytes));
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
    return absl::InvalidArgumentError(
        absl::StrCat("result is ", request.result.size(), " bytes; max_result_bytes is ", options_.max_result_bytes));
  }
  return absl::OkStatus();
}

absl::Status Store::Impl::CheckEffectsOf(const CommitRequest& request) const {
  if (request.effects == nullptr) return absl::OkStatus();
  engine::ProtectedWrites protect;
  protect.records_cf = cf()->GetID();
  protect.metadata_cf = metadata_.cf->GetID();
  protect.metadata_prefix = engine::kMetadataKeyPrefix;
  if (options_.effect_column_families) protect.allowed = &*options_.effect_column_families;
  return engine::CheckEffects(*request.effects, protect);
}

absl::Status Store::Impl::ValidateCommit(std::string_view result, const rocksdb::WriteBatch* effects) const {
  // A well-formed ID and token, so that only the result and the effects are judged.
  CommitRequest request{std::string_view("-"), 1, result, const_cast<rocksdb::WriteBatch*>(effects)};
  if (absl::Status s = CheckCommit(request); !s.ok()) return s;
  Operation op(*lifecycle_);
  if (!op.ok()) return op.status();
  return CheckEffectsOf(request);
}

absl::StatusOr<Store::Impl::Lookup> Store::Impl::Read(const engine::IdKey& key, bool count_fast_path) const {
  const std::string_view id = key.id;
  Lookup lookup;
  const engine::RecordKey record_key(layout_, key.id, key.hash);
  rocksdb::Status s = db()->Get(no_io_reads_, cf(), record_key.slice(), &lookup.value);
  if (s.IsIncomplete()) {
    s = db()->Get(reads_, cf(), record_key.slice(), &lookup.value);
  } else if (s.IsNotFound() && count_fast_path) {
    counters_.fast_path_hits.fetch_add(1, std::memory_order_relaxed);
  }
  if (s.ok()) {
    lookup.found = true;
    return lookup;
  }
  if (s.IsNotFound()) return lookup;
  counters_.storage_errors.fetch_add(1, std::memory_order_relaxed);
  return util::FromRocks(s, absl::StrCat("reading '", util::Printable(id), "'"));
}

absl::Status Store::Impl::StorageError(const rocksdb::Status& status, std::string_view context) {
  counters_.storage_errors.fetch_add(1, std::memory_order_relaxed);
  absl::Status error = util::FromRocks(status, context);
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
  return StorageError(s, absl::StrCat(util::ToAbsl(verb), " '", util::Printable(id),
                                      "' (outcome unknown: it may have reached the WAL)"));
}

namespace {
// The sequence number DB::Write stored in the batch's header (its first 8 bytes, little-endian).
uint64_t SequenceOf(const rocksdb::WriteBatch& batch) {
  const std::string& rep = batch.Data();
  uint64_t sequence = 0;
  for (int i = 7; i >= 0 && rep.size() >= 8; --i) sequence = (sequence << 8) | static_cast<uint8_t>(rep[i]);
  return sequence;
}
}  // namespace

absl::Status Store::Impl::WriteCommitted(rocksdb::WriteBatch* batch, std::string_view verb, std::string_view id,
                                         int64_t tag) {
  if (!options_.commit_hook) return Write(batch, verb, id);
  util::MutexLock order(&commit_order_mu_);
  absl::Status s = Write(batch, verb, id);
  if (s.ok()) options_.commit_hook(CommittedWrite{batch, SequenceOf(*batch), tag});
  return s;
}

// ---------------------------------------------------------------------------------------------------
// Check-and-reserve

absl::StatusOr<Record> Store::Impl::DecodeStored(std::string_view id, std::string_view bytes,
                                                 bool count_corrupt) const {
  absl::StatusOr<Record> record = engine::DecodeRecord(bytes);
  if (record.ok()) return record;
  if (count_corrupt) counters_.corrupt_records.fetch_add(1, std::memory_order_relaxed);
  return absl::DataLossError(absl::StrCat("record of '", util::Printable(id), "': ", record.status().message()));
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

std::optional<Reservation> Store::Impl::AnswerFromMemory(const engine::IdKey& key,
                                                         const std::optional<uint64_t>& fingerprint, const Instant& at,
                                                         Replaced* replaced) {
  // A lease is newer than any cached commit of the same ID (Reserve erases the cache entry), so it is
  // looked at first.
  if (std::optional<engine::HeldLease> lease = holds_->Find(key, at.monotonic)) {
    if (!lease->ended) {
      if (auto conflict = ConflictOf(fingerprint, lease->fingerprint, lease->deadline, {})) return conflict;
      counters_.in_flight.fetch_add(1, std::memory_order_relaxed);
      return Reservation{Verdict::kInFlight, 0, lease->deadline, {}, false};
    }
    holds_->Drop(key);
    replaced->takeover = true;
    replaced->previous_token = lease->token;
    return std::nullopt;
  }
  if (const engine::RecentCommit* done = recent_.Find(key, at.now)) {
    if (auto conflict = ConflictOf(fingerprint, done->fingerprint, done->deadline, done->result)) return conflict;
    counters_.duplicate.fetch_add(1, std::memory_order_relaxed);
    return Reservation{Verdict::kDuplicate, done->token, done->deadline, done->result, false};
  }
  return std::nullopt;
}

absl::StatusOr<Reservation> Store::Impl::Decide(const engine::IdKey& key, const std::optional<uint64_t>& fingerprint,
                                                absl::Duration lease, const Lookup& lookup, const Instant& at,
                                                Replaced replaced, rocksdb::WriteBatch* batch) {
  Reservation reservation;
  if (lookup.found) {
    absl::StatusOr<Record> record = DecodeStored(key.id, lookup.value, /*count_corrupt=*/true);
    if (!record.ok()) return record.status();
    const absl::Time deadline = FromMicros(record->deadline_us);
    // A reservation below the floor was made by an earlier process (RocksDB's lock) or an earlier,
    // closed Store on this DB (the registry): its holder is gone, so its lease is not waited out.
    const bool holder_gone = record->state == RecordState::kReserved && record->token < token_floor_;
    if (deadline > at.now && !holder_gone) {
      if (auto conflict = ConflictOf(fingerprint, record->fingerprint, deadline, record->result)) return *conflict;
      reservation.deadline = deadline;
      if (record->state == RecordState::kDone) {
        reservation.verdict = Verdict::kDuplicate;
        reservation.token = record->token;  // the token the commit was made with
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
    if (holder_gone && deadline > at.now) {
      // Taken over before its lease ended: a fingerprint that differs is still a conflict.
      if (auto conflict = ConflictOf(fingerprint, record->fingerprint, deadline, {})) return *conflict;
    }
    // Past its deadline (or its holder gone) the record reads as absent. A reservation replaced is a takeover.
    if (record->state == RecordState::kReserved) {
      replaced.takeover = true;
      replaced.holder_gone = holder_gone;
      replaced.previous_token = record->token;
    }
  }
  // A new reservation leads to a write (its own, or the Commit's): none while the disk is nearly full.
  // Durable reservations are checked by their own write.
  if (disk_guard_ != nullptr && !holds_->persists_holds()) {
    if (absl::Status s = disk_guard_->CheckWrite(0); !s.ok()) return s;
  }
  absl::StatusOr<uint64_t> token = tokens_->Next();
  if (!token.ok()) {
    counters_.storage_errors.fetch_add(1, std::memory_order_relaxed);
    return token.status();
  }
  reservation.verdict = Verdict::kReserved;
  reservation.token = *token;
  reservation.deadline = at.now + lease;
  reservation.takeover = replaced.takeover;
  reservation.holder_gone = replaced.holder_gone;
  reservation.previous_token = replaced.previous_token;
  // An expired commit of this ID may still be cached; after a backward clock jump it would read as
  // live again and contradict this newer reservation.
  recent_.Erase(key);
  std::optional<engine::RecordKey> record_key;  // only a durable hold writes a record
  if (batch != nullptr) record_key.emplace(layout_, key.id, key.hash);
  holds_->Hold(key, engine::HeldLease{*token, reservation.deadline, fingerprint, false}, lease, at.monotonic, cf(),
               record_key ? record_key->slice() : rocksdb::Slice(), batch);
  return reservation;
}

absl::StatusOr<Reservation> Store::Impl::ReserveLocked(const engine::IdKey& key,
                                                       const std::optional<uint64_t>& fingerprint, absl::Duration lease,
                                                       const Instant& at) {
  Replaced replaced;
  if (std::optional<Reservation> answer = AnswerFromMemory(key, fingerprint, at, &replaced)) {
    return *std::move(answer);
  }
  absl::StatusOr<Lookup> lookup = Read(key, /*count_fast_path=*/true);
  if (!lookup.ok()) return lookup.status();
  // Only durable holds write: in-memory ones are not made to build (and free) a batch for nothing.
  rocksdb::WriteBatch* batch = nullptr;
  if (holds_->persists_holds()) {
    batch = &ScratchBatch();
    batch->Clear();
  }
  absl::StatusOr<Reservation> reservation = Decide(key, fingerprint, lease, *lookup, at, replaced, batch);
  if (!reservation.ok() || reservation->verdict != Verdict::kReserved) return reservation;
  if (batch != nullptr) {
    if (absl::Status s = Write(batch, "reserving", key.id); !s.ok()) {
      holds_->Drop(key);  // not the caller's; if the write landed, its record reads as in flight
      return s;
    }
    expiry_.NoteDeadline(ToMicros(reservation->deadline));
  }
  counters_.reserved.fetch_add(1, std::memory_order_relaxed);
  if (reservation->takeover) counters_.takeovers.fetch_add(1, std::memory_order_relaxed);
  return reservation;
}

absl::StatusOr<Reservation> Store::Impl::Reserve(std::string_view id, const ReserveOptions& options) {
  if (absl::Status s = CheckId(id); !s.ok()) return s;
  const absl::Duration lease = options.lease.value_or(options_.lease);
  if (options.lease) {
    if (absl::Status s = engine::CheckLease(lease, options_.ttl, "ReserveOptions::lease"); !s.ok()) return s;
  }
  Operation op(*lifecycle_);
  if (!op.ok()) return op.status();
  engine::QuietPerfCounters quiet;
  engine::LatencyTimer timer(&reserve_latency_);
  const engine::IdKey key = engine::KeyLocks::KeyOf(id);
  std::unique_lock<std::mutex> lock(locks_.At(key.stripe)->native());
  std::optional<std::chrono::steady_clock::time_point> give_up;  // read only when the caller waits
  for (;;) {
    const Instant at = Clocks();
    absl::StatusOr<Reservation> reservation = ReserveLocked(key, options.fingerprint, lease, at);
    if (!reservation.ok() || reservation->verdict != Verdict::kInFlight || options.wait <= absl::ZeroDuration()) {
      return reservation;
    }
    const auto real_now = std::chrono::steady_clock::now();
    if (!give_up) give_up = real_now + absl::ToChronoNanoseconds(options.wait);
    if (real_now >= *give_up) return reservation;
    // Sleep until the holder commits or releases (Changed is notified), its lease ends, or we give up.
    const auto lease_left = absl::ToChronoNanoseconds(std::max(reservation->deadline - at.now, absl::Milliseconds(1)));
    counters_.in_flight.fetch_sub(1, std::memory_order_relaxed);  // not returned: answered again below
    counters_.waits.fetch_add(1, std::memory_order_relaxed);
    locks_.Changed(key.stripe).wait_until(lock, std::min(*give_up, real_now + lease_left));
  }
}

std::vector<absl::StatusOr<Reservation>> Store::Impl::ReserveBatch(
    absl::Span<const std::string_view> ids, absl::Span<const std::optional<uint64_t>> fingerprints) {
  std::vector<absl::StatusOr<Reservation>> results(ids.size(), absl::UnknownError("not evaluated"));
  if (!fingerprints.empty() && fingerprints.size() != ids.size()) {
    for (auto& r : results) {
      r = absl::InvalidArgumentError(absl::StrCat("ReserveBatch: ", fingerprints.size(), " fingerprints for ",
                                                  ids.size(), " IDs (give one per ID, or none)"));
    }
    return results;
  }
  auto fingerprint_of = [&](size_t i) -> std::optional<uint64_t> {
    return fingerprints.empty() ? std::nullopt : fingerprints[i];
  };
  Operation op(*lifecycle_);
  if (!op.ok()) {
    for (auto& r : results) r = op.status();
    return results;
  }
  engine::QuietPerfCounters quiet;
  engine::LatencyTimer timer(&reserve_latency_);

  // The first occurrence of each valid ID is evaluated; later occurrences answer from the first.
  std::vector<size_t> firsts;  // indices into ids
  absl::flat_hash_map<absl::string_view, size_t> first_index;
  std::vector<engine::IdKey> keys;  // of firsts
  std::vector<size_t> stripes;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (absl::Status s = CheckId(ids[i]); !s.ok()) {
      results[i] = s;
      continue;
    }
    if (first_index.emplace(util::ToAbsl(ids[i]), i).second) {
      firsts.push_back(i);
      keys.push_back(engine::KeyLocks::KeyOf(ids[i]));
      stripes.push_back(keys.back().stripe);
    }
  }
  engine::KeyLocks::Group lock(&locks_, std::move(stripes));
  const Instant at = Clocks();

  // Memory first; what it cannot answer is read with one MultiGet. Not with a no-I/O MultiGet first, as
  // single reads do: in RocksDB 7.8, MultiGet with read_tier = kBlockCacheTier answered OK with an empty
  // value for a record that was fine (found by the crash-torture test), and in a probe it read from disk
  // anyway; an answer it gives without honouring the tier cannot be trusted for a verdict.
  std::vector<size_t> to_read;  // positions in firsts
  std::vector<Replaced> replaced(firsts.size());
  for (size_t k = 0; k < firsts.size(); ++k) {
    if (std::optional<Reservation> answer = AnswerFromMemory(keys[k], fingerprint_of(firsts[k]), at, &replaced[k])) {
      results[firsts[k]] = *std::move(answer);
    } else {
      to_read.push_back(k);
    }
  }
  const size_t n = to_read.size();
  std::deque<engine::RecordKey> record_keys;  // not movable: a deque keeps them in place
  std::vector<rocksdb::Slice> slices(n);
  for (size_t r = 0; r < n; ++r) {
    const engine::IdKey& k = keys[to_read[r]];
    slices[r] = record_keys.emplace_back(layout_, k.id, k.hash).slice();
  }
  std::vector<rocksdb::PinnableSlice> values(n);
  std::vector<rocksdb::Status> statuses(n);
  if (n > 0) db()->MultiGet(reads_, cf(), n, slices.data(), values.data(), statuses.data());

  rocksdb::WriteBatch batch;
  std::vector<size_t> reserved;  // positions in firsts
  for (size_t r = 0; r < n; ++r) {
    const size_t k = to_read[r];
    const size_t i = firsts[k];
    Lookup lookup;
    if (statuses[r].ok()) {
      lookup.found = true;
      lookup.value.assign(values[r].data(), values[r].size());
    } else if (!statuses[r].IsNotFound()) {
      counters_.storage_errors.fetch_add(1, std::memory_order_relaxed);
      results[i] = util::FromRocks(statuses[r], absl::StrCat("reading '", util::Printable(ids[i]), "'"));
      continue;
    }
    // Only durable holds write: in-memory ones get no batch (and build no record key for it).
    results[i] = Decide(keys[k], fingerprint_of(i), options_.lease, lookup, at, replaced[k],
                        holds_->persists_holds() ? &batch : nullptr);
    if (results[i].ok() && results[i]->verdict == Verdict::kReserved) reserved.push_back(k);
  }
  if (holds_->persists_holds() && !reserved.empty()) {
    if (absl::Status s = Write(&batch, "reserving a batch including", keys[reserved[0]].id); !s.ok()) {
      for (size_t k : reserved) {
        results[firsts[k]] = s;
        holds_->Drop(keys[k]);
      }
      reserved.clear();
    } else {
      expiry_.NoteDeadline(ToMicros(at.now + options_.lease));
    }
  }
  for (size_t k : reserved) {
    counters_.reserved.fetch_add(1, std::memory_order_relaxed);
    if (results[firsts[k]]->takeover) counters_.takeovers.fetch_add(1, std::memory_order_relaxed);
  }
  // Repeats within the batch: a reservation made by the first occurrence is in flight for the others.
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!CheckId(ids[i]).ok()) continue;
    const size_t first = first_index[util::ToAbsl(ids[i])];
    if (first == i) continue;
    if (!results[first].ok()) {
      results[i] = results[first].status();
      continue;
    }
    Reservation repeat = *results[first];
    // A repeat with another payload than the first's conflicts, as a Reserve of it would.
    if (repeat.verdict == Verdict::kReserved || repeat.verdict == Verdict::kInFlight) {
      if (std::optional<Reservation> conflict =
              ConflictOf(fingerprint_of(i), fingerprint_of(first), repeat.deadline, {})) {
        results[i] = *std::move(conflict);
        continue;
      }
    }
    if (repeat.verdict == Verdict::kReserved) repeat = Reservation{Verdict::kInFlight, 0, repeat.deadline, {}, false};
    (repeat.verdict == Verdict::kDuplicate ? counters_.duplicate : counters_.in_flight)
        .fetch_add(1, std::memory_order_relaxed);
    results[i] = std::move(repeat);
  }
  return results;
}

// ---------------------------------------------------------------------------------------------------
// Commit, Release, Extend

absl::Status Store::Impl::AbortedFor(std::string_view id, uint64_t token, std::string_view verb, std::string_view why) {
  counters_.lease_lost.fetch_add(1, std::memory_order_relaxed);
  return absl::AbortedError(absl::StrCat("cannot ", util::ToAbsl(verb), " '", util::Printable(id), "' with token ",
                                         token, ": ", util::ToAbsl(why)));
}

absl::StatusOr<Store::Impl::Hold> Store::Impl::FindHold(const engine::IdKey& key, uint64_t token, std::string_view verb,
                                                        const Instant& at) {
  const std::string_view id = key.id;
  if (token < token_floor_) {
    // Whatever the store holds: a done record written by an earlier owner with this token, or one
    // restored from its changelog, does not make this caller its holder.
    counters_.fenced.fetch_add(1, std::memory_order_relaxed);
    return AbortedFor(id, token, verb,
                      absl::StrCat("the token is below this store's floor ", token_floor_,
                                   ": it was issued by an earlier owner or process, which no longer holds the ID"));
  }
  Hold hold;
  if (std::optional<engine::HeldLease> lease = holds_->Find(key, at.monotonic)) {
    if (lease->token != token) {
      return AbortedFor(id, token, verb,
                        absl::StrCat("the ID is held by token ", lease->token,
                                     " (the lease was lost or the token is not this ID's)"));
    }
    hold.in_table = true;
    hold.fingerprint = lease->fingerprint;
    return hold;
  }
  if (const engine::RecentCommit* done = recent_.Find(key, at.now)) {
    if (done->token != token) {
      return AbortedFor(id, token, verb, absl::StrCat("the ID was committed by token ", done->token));
    }
    hold.done = true;
    return hold;
  }
  absl::StatusOr<Lookup> lookup = Read(key, /*count_fast_path=*/false);
  if (!lookup.ok()) return lookup.status();
  if (!lookup->found) return AbortedFor(id, token, verb, "no reservation (released, expired or never made)");
  absl::StatusOr<Record> record = DecodeStored(id, lookup->value, /*count_corrupt=*/true);
  if (!record.ok()) return record.status();
  if (record->state == RecordState::kDone && FromMicros(record->deadline_us) <= at.now) {
    // Past its retention the record reads as absent, here as in Reserve: the ID may be new again.
    return AbortedFor(id, token, verb, "the ID's commit has expired (past its ttl)");
  }
  if (record->token != token) {
    return AbortedFor(
        id, token, verb,
        absl::StrCat("the ID is held by token ", record->token, " (the lease was lost or the token is not this ID's)"));
  }
  hold.done = record->state == RecordState::kDone;
  hold.fingerprint = record->fingerprint;
  hold.record = *record;
  hold.record.result = {};  // points into lookup, which dies here
  return hold;
}

bool Store::Impl::CommitLanded(const engine::IdKey& key, uint64_t token) {
  absl::StatusOr<Lookup> lookup = Read(key, /*count_fast_path=*/false);
  if (!lookup.ok() || !lookup->found) return false;
  absl::StatusOr<Record> record = engine::DecodeRecord(lookup->value);
  if (!record.ok() || record->state != RecordState::kDone || record->token != token) return false;
  recent_.Put(key, record->token, FromMicros(record->deadline_us), record->fingerprint, record->result);
  return true;
}

void Store::Impl::NoteCommitted(const engine::IdKey& key, const CommitRequest& request, const Record& done) {
  holds_->Drop(key);
  locks_.Changed(key.stripe).notify_all();
  recent_.Put(key, request.token, FromMicros(done.deadline_us), done.fingerprint, request.result);
  expiry_.NoteDeadline(done.deadline_us);
  counters_.committed.fetch_add(1, std::memory_order_relaxed);
}

absl::Status Store::Impl::Commit(std::string_view id, uint64_t token, std::string_view result,
                                 rocksdb::WriteBatch* effects) {
  const CommitRequest request{id, token, result, effects};
  if (absl::Status s = CheckCommit(request); !s.ok()) return s;
  Operation op(*lifecycle_);
  if (!op.ok()) return op.status();
  if (absl::Status s = CheckEffectsOf(request); !s.ok()) return s;
  engine::QuietPerfCounters quiet;
  engine::LatencyTimer timer(&commit_latency_);
  const engine::IdKey key = engine::KeyLocks::KeyOf(id);
  util::MutexLock lock(locks_.At(key.stripe));
  const Instant at = Clocks();

  absl::StatusOr<Hold> hold = FindHold(key, token, "commit", at);
  if (!hold.ok()) return hold.status();
  // Same token, already done: a repeated Commit (e.g. a retry after an ambiguous error that did land).
  if (hold->done) return absl::OkStatus();

  const Record done = DoneRecord(token, hold->fingerprint, result, at.now);
  const engine::EncodedRecord encoded_record(done);
  const rocksdb::Slice encoded = util::AsSlice(encoded_record.view());
  const engine::RecordKey record_key(layout_, id, key.hash);
  absl::Status status;
  if (effects != nullptr) {
    // The marker rides in the caller's batch so effects and marker land in one atomic write; the save
    // point hands the batch back exactly as the caller built it. A batch that refuses the marker (one
    // built with a byte limit) must not be written: its effects would land without the marker and the
    // redelivery would apply them again.
    effects->SetSavePoint();
    if (const rocksdb::Status added = effects->Put(cf(), record_key.slice(), encoded); !added.ok()) {
      effects->RollbackToSavePoint().PermitUncheckedError();
      return absl::InvalidArgumentError(absl::StrCat("cannot commit '", util::Printable(id),
                                                     "': the effects batch refused the done marker (", added.ToString(),
                                                     "); nothing was written, the reservation still holds"));
    }
    status = WriteCommitted(effects, "committing", id);
    effects->RollbackToSavePoint().PermitUncheckedError();
  } else {
    rocksdb::WriteBatch& batch = ScratchBatch();
    batch.Clear();
    batch.Put(cf(), record_key.slice(), encoded).PermitUncheckedError();  // an unlimited batch of ours
    status = WriteCommitted(&batch, "committing", id);
  }
  if (!status.ok()) {
    holds_->CommitOutcomeUnknown(key);
    return status;
  }
  NoteCommitted(key, request, done);
  return absl::OkStatus();
}

std::vector<absl::Status> Store::Impl::CommitBatch(absl::Span<const CommitRequest> requests, int64_t tag) {
  std::vector<absl::Status> results(requests.size());
  Operation op(*lifecycle_);
  if (!op.ok()) {
    for (auto& r : results) r = op.status();
    return results;
  }
  engine::QuietPerfCounters quiet;
  engine::LatencyTimer timer(&commit_latency_);
  std::vector<engine::IdKey> keys(requests.size());
  std::vector<size_t> valid;
  absl::flat_hash_map<absl::string_view, size_t> seen;
  for (size_t i = 0; i < requests.size(); ++i) {
    results[i] = CheckCommit(requests[i]);
    if (results[i].ok()) results[i] = CheckEffectsOf(requests[i]);
    if (results[i].ok() && !seen.emplace(util::ToAbsl(requests[i].id), i).second) {
      results[i] = absl::InvalidArgumentError(
          absl::StrCat("'", util::Printable(requests[i].id), "' appears twice in one CommitBatch"));
    }
    if (!results[i].ok()) continue;
    keys[i] = engine::KeyLocks::KeyOf(requests[i].id);
    valid.push_back(i);
  }
  std::vector<size_t> held_stripes;
  held_stripes.reserve(valid.size());
  for (size_t i : valid) held_stripes.push_back(keys[i].stripe);
  engine::KeyLocks::Group lock(&locks_, std::move(held_stripes));
  const Instant at = Clocks();

  engine::BatchConcatenation all;
  rocksdb::WriteBatch markers;
  std::vector<std::pair<size_t, Record>> to_commit;
  std::string& encoded = EncodeBuffer();
  for (size_t i : valid) {
    const CommitRequest& request = requests[i];
    absl::StatusOr<Hold> hold = FindHold(keys[i], request.token, "commit", at);
    if (!hold.ok()) {
      results[i] = hold.status();
      continue;
    }
    if (hold->done) continue;  // a repeat: OK, nothing to write
    const Record done = DoneRecord(request.token, hold->fingerprint, request.result, at.now);
    if (request.effects != nullptr) all.Append(*request.effects);
    engine::EncodeRecord(done, &encoded);
    markers.Put(cf(), engine::RecordKey(layout_, request.id, keys[i].hash).slice(), encoded);
    to_commit.emplace_back(i, done);
  }
  if (to_commit.empty()) return results;
  all.Append(markers);
  rocksdb::WriteBatch batch = all.Finish();
  if (absl::Status s = WriteCommitted(&batch, "committing a batch including", requests[to_commit[0].first].id, tag);
      !s.ok()) {
    for (const auto& [i, done] : to_commit) {
      results[i] = s;
      holds_->CommitOutcomeUnknown(keys[i]);
    }
    return results;
  }
  for (const auto& [i, done] : to_commit) NoteCommitted(keys[i], requests[i], done);
  return results;
}

template <typename Step>
absl::Status Store::Impl::OnHold(std::string_view id, uint64_t token, std::string_view verb, Step&& step) {
  if (absl::Status s = CheckId(id); !s.ok()) return s;
  if (absl::Status s = CheckToken(token); !s.ok()) return s;
  Operation op(*lifecycle_);
  if (!op.ok()) return op.status();
  engine::QuietPerfCounters quiet;
  const engine::IdKey key = engine::KeyLocks::KeyOf(id);
  util::MutexLock lock(locks_.At(key.stripe));
  const Instant at = Clocks();
  absl::StatusOr<Hold> hold = FindHold(key, token, verb, at);
  if (!hold.ok()) return hold.status();
  if (hold->done) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot ", util::ToAbsl(verb), " '", util::Printable(id), "': already committed"));
  }
  return step(key, *hold, at);
}

absl::Status Store::Impl::Release(std::string_view id, uint64_t token) {
  return OnHold(id, token, "release", [&](const engine::IdKey& key, const Hold& hold, const Instant&) {
    if (!hold.in_table || holds_->persists_holds()) {
      rocksdb::WriteBatch batch;
      batch.Delete(cf(), engine::RecordKey(layout_, id, key.hash).slice());
      // Outcome unknown: the hold stays, and its record may still be there; a retried Release finds it.
      if (absl::Status s = Write(&batch, "releasing", id); !s.ok()) return s;
    }
    holds_->Drop(key);
    locks_.Changed(key.stripe).notify_all();
    counters_.released.fetch_add(1, std::memory_order_relaxed);
    return absl::OkStatus();
  });
}

absl::Status Store::Impl::Extend(std::string_view id, uint64_t token) {
  return OnHold(id, token, "extend", [&](const engine::IdKey& key, const Hold& hold, const Instant& at) {
    const absl::Time deadline = at.now + options_.lease;
    if (!hold.in_table || holds_->persists_holds()) {
      Record renewed = hold.record;
      if (hold.in_table) {  // this process's durable reservation: its record is what the table holds
        renewed.state = RecordState::kReserved;
        renewed.token = token;
        renewed.fingerprint = hold.fingerprint;
      }
      renewed.deadline_us = ToMicros(deadline);
      rocksdb::WriteBatch batch;
      batch.Put(cf(), engine::RecordKey(layout_, id, key.hash).slice(), engine::EncodeRecord(renewed));
      if (absl::Status s = Write(&batch, "extending", id); !s.ok()) return s;
      expiry_.NoteDeadline(renewed.deadline_us);
    }
    if (hold.in_table) holds_->Renew(key, deadline, at.monotonic);
    counters_.extended.fetch_add(1, std::memory_order_relaxed);
    return absl::OkStatus();
  });
}

}  // namespace idem
