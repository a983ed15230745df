#include <algorithm>
#include <chrono>
#include <filesystem>
#include <limits>
#include <optional>
#include <unordered_map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/strings/str_format.h"
#include "engine/rocksdb_options.h"
#include "engine/status_util.h"
#include "engine/store_impl.h"
#include "rocksdb/write_batch.h"

namespace idem {

using engine::FromMicros;
using engine::Record;
using engine::RecordState;
using engine::ToMicros;

namespace {

absl::Status ClosedError() { return absl::FailedPreconditionError("idem store is closed"); }

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
// HealthListener

void Store::Impl::HealthListener::OnBackgroundError(rocksdb::BackgroundErrorReason /*reason*/,
                                                    rocksdb::Status* status) {
  // A soft error leaves writes working; only errors that stop writes make the store unavailable.
  if (status != nullptr && !status->ok() && status->severity() >= rocksdb::Status::Severity::kHardError) {
    Set(engine::FromRocks(*status, "RocksDB background error"));
  }
}

void Store::Impl::HealthListener::OnErrorRecoveryEnd(const rocksdb::BackgroundErrorRecoveryInfo& info) {
  if (info.new_bg_error.ok()) Set(absl::OkStatus());
}

absl::Status Store::Impl::HealthListener::error() const {
  engine::MutexLock lock(&mu_);
  return error_;
}

void Store::Impl::HealthListener::Set(absl::Status status) {
  engine::MutexLock lock(&mu_);
  if (!status.ok() && status.code() != absl::StatusCode::kUnavailable) {
    status = absl::UnavailableError(status.message());
  }
  error_ = std::move(status);
}

// ---------------------------------------------------------------------------------------------------
// Construction and lifecycle

Store::Impl::Impl(const Options& options, rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf,
                  std::shared_ptr<engine::ExpiryFilterFactory> filter)
    : options_(options),
      clock_(engine::ClockOf(options)),
      db_(db),
      cf_(cf),
      filter_(std::move(filter)),
      memtable_max_deadline_us_(std::numeric_limits<int64_t>::min()) {
  write_options_.sync = options.sync;
}

Store::Impl::~Impl() { Close().IgnoreError(); }

absl::Status Store::Impl::Start(std::unique_ptr<rocksdb::DB> owned_db,
                                std::vector<rocksdb::ColumnFamilyHandle*> owned_handles,
                                std::shared_ptr<HealthListener> health) {
  owned_db_ = std::move(owned_db);
  owned_handles_ = std::move(owned_handles);
  health_ = health ? std::move(health) : std::make_shared<HealthListener>();
  filter_->SetClock(clock_);
  absl::StatusOr<std::unique_ptr<engine::TokenSource>> tokens = engine::TokenSource::Load(db_, cf_, write_options_);
  if (!tokens.ok()) return tokens.status();
  tokens_ = std::move(*tokens);
  if (options_.maintenance_interval > absl::ZeroDuration()) {
    maintenance_thread_ = std::thread([this] { MaintenanceLoop(); });
  }
  return absl::OkStatus();
}

absl::Status Store::Impl::Close() {
  {
    std::lock_guard<std::mutex> lock(maintenance_mu_);
    stop_maintenance_ = true;
  }
  maintenance_cv_.notify_all();
  closing_.store(true, std::memory_order_release);
  if (maintenance_thread_.joinable()) maintenance_thread_.join();

  engine::WriterLock lock(&lifecycle_mu_);
  if (closed_) return close_status_;
  closed_ = true;
  if (owned_db_ != nullptr) {
    for (rocksdb::ColumnFamilyHandle* handle : owned_handles_) {
      rocksdb::Status s = owned_db_->DestroyColumnFamilyHandle(handle);
      if (!s.ok() && close_status_.ok()) close_status_ = engine::FromRocks(s, "closing column family");
    }
    owned_handles_.clear();
    rocksdb::Status s = owned_db_->Close();
    if (!s.ok() && close_status_.ok()) close_status_ = engine::FromRocks(s, "closing the DB");
    owned_db_.reset();
  }
  return close_status_;
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

absl::StatusOr<Store::Impl::Lookup> Store::Impl::Read(std::string_view id, bool count_fast_path) const {
  Lookup lookup;
  rocksdb::ReadOptions no_io;
  no_io.read_tier = rocksdb::kBlockCacheTier;
  rocksdb::Status s = db_->Get(no_io, cf_, AsSlice(id), &lookup.value);
  if (s.IsIncomplete()) s = db_->Get(rocksdb::ReadOptions(), cf_, AsSlice(id), &lookup.value);
  else if (s.IsNotFound() && count_fast_path) counters_.fast_path_hits.fetch_add(1, std::memory_order_relaxed);
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
  if (status.IsIOError() || status.IsNoSpace()) health_->Set(error);
  return error;
}

absl::Status Store::Impl::Write(rocksdb::WriteBatch* batch, std::string_view context) {
  const rocksdb::Status s = db_->Write(write_options_, batch);
  if (!s.ok()) return StorageError(s, absl::StrCat(engine::ToAbsl(context), " (outcome unknown: it may have reached the WAL)"));
  return absl::OkStatus();
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

absl::StatusOr<Reservation> Store::Impl::Decide(std::string_view id, const Lookup& lookup, absl::Time now,
                                                std::string* record_to_write) {
  Reservation reservation;
  if (lookup.found) {
    absl::StatusOr<Record> record = engine::DecodeRecord(lookup.value);
    if (!record.ok()) {
      counters_.corrupt_records.fetch_add(1, std::memory_order_relaxed);
      return absl::DataLossError(absl::StrCat("record of '", Printable(id), "': ", record.status().message()));
    }
    const absl::Time deadline = FromMicros(record->deadline_us);
    if (deadline > now) {
      reservation.deadline = deadline;
      if (record->state == RecordState::kDone) {
        reservation.verdict = Verdict::kDuplicate;
        reservation.result = std::string(record->result);
        counters_.duplicate.fetch_add(1, std::memory_order_relaxed);
      } else {
        reservation.verdict = Verdict::kInFlight;
        counters_.in_flight.fetch_add(1, std::memory_order_relaxed);
      }
      return reservation;
    }
    // Past its deadline: the record reads as absent. A reservation that ran out is a takeover.
    reservation.takeover = record->state == RecordState::kReserved;
  }
  absl::StatusOr<uint64_t> token = tokens_->Next();
  if (!token.ok()) {
    counters_.storage_errors.fetch_add(1, std::memory_order_relaxed);
    return token.status();
  }
  reservation.verdict = Verdict::kReserved;
  reservation.token = *token;
  reservation.deadline = now + options_.lease;
  Record record;
  record.state = RecordState::kReserved;
  record.deadline_us = ToMicros(reservation.deadline);
  record.token = *token;
  engine::EncodeRecord(record, record_to_write);
  return reservation;
}

absl::StatusOr<Reservation> Store::Impl::Reserve(std::string_view id) {
  if (absl::Status s = CheckId(id); !s.ok()) return s;
  Operation op(this);
  if (!op.open()) return ClosedError();
  LatencyTimer timer(&reserve_latency_);
  engine::MutexLock lock(locks_.For(id));

  absl::StatusOr<Lookup> lookup = Read(id, /*count_fast_path=*/true);
  if (!lookup.ok()) return lookup.status();
  std::string record;
  absl::StatusOr<Reservation> reservation = Decide(id, *lookup, clock_->Now(), &record);
  if (!reservation.ok() || reservation->verdict != Verdict::kReserved) return reservation;

  rocksdb::WriteBatch batch;
  batch.Put(cf_, AsSlice(id), record);
  if (absl::Status s = Write(&batch, absl::StrCat("reserving '", Printable(id), "'")); !s.ok()) return s;
  NoteMemtableDeadline(ToMicros(reservation->deadline));
  counters_.reserved.fetch_add(1, std::memory_order_relaxed);
  if (reservation->takeover) counters_.takeovers.fetch_add(1, std::memory_order_relaxed);
  return reservation;
}

std::vector<absl::StatusOr<Reservation>> Store::Impl::ReserveBatch(absl::Span<const std::string_view> ids) {
  std::vector<absl::StatusOr<Reservation>> results(ids.size(), absl::UnknownError("not evaluated"));
  Operation op(this);
  if (!op.open()) {
    for (auto& r : results) r = ClosedError();
    return results;
  }
  LatencyTimer timer(&reserve_latency_);

  // The first occurrence of each valid ID is looked up; later occurrences answer from the first.
  std::vector<size_t> lookups;  // indices into ids
  std::unordered_map<std::string_view, size_t> first_index;
  std::vector<size_t> stripes;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (absl::Status s = CheckId(ids[i]); !s.ok()) {
      results[i] = s;
      continue;
    }
    if (first_index.emplace(ids[i], i).second) {
      lookups.push_back(i);
      stripes.push_back(locks_.StripeOf(ids[i]));
    }
  }
  engine::KeyLocks::Group lock(&locks_, std::move(stripes));

  // One MultiGet without I/O, then one with I/O for the keys it could not answer.
  const size_t n = lookups.size();
  std::vector<rocksdb::Slice> keys(n);
  for (size_t k = 0; k < n; ++k) keys[k] = AsSlice(ids[lookups[k]]);
  std::vector<rocksdb::PinnableSlice> values(n);
  std::vector<rocksdb::Status> statuses(n);
  rocksdb::ReadOptions no_io;
  no_io.read_tier = rocksdb::kBlockCacheTier;
  if (n > 0) db_->MultiGet(no_io, cf_, n, keys.data(), values.data(), statuses.data());
  std::vector<size_t> retry;
  for (size_t k = 0; k < n; ++k) {
    if (statuses[k].IsIncomplete()) retry.push_back(k);
    else if (statuses[k].IsNotFound()) counters_.fast_path_hits.fetch_add(1, std::memory_order_relaxed);
  }
  if (!retry.empty()) {
    std::vector<rocksdb::Slice> retry_keys;
    for (size_t k : retry) retry_keys.push_back(keys[k]);
    std::vector<rocksdb::PinnableSlice> retry_values(retry.size());
    std::vector<rocksdb::Status> retry_statuses(retry.size());
    db_->MultiGet(rocksdb::ReadOptions(), cf_, retry.size(), retry_keys.data(), retry_values.data(),
                  retry_statuses.data());
    for (size_t r = 0; r < retry.size(); ++r) {
      statuses[retry[r]] = retry_statuses[r];
      values[retry[r]].Reset();
      values[retry[r]].PinSelf(retry_values[r]);
    }
  }

  const absl::Time now = clock_->Now();
  rocksdb::WriteBatch batch;
  std::vector<size_t> reserved;  // indices into ids
  for (size_t k = 0; k < n; ++k) {
    const size_t i = lookups[k];
    Lookup lookup;
    if (statuses[k].ok()) {
      lookup.found = true;
      lookup.value.assign(values[k].data(), values[k].size());
    } else if (!statuses[k].IsNotFound()) {
      counters_.storage_errors.fetch_add(1, std::memory_order_relaxed);
      results[i] = engine::FromRocks(statuses[k], absl::StrCat("reading '", Printable(ids[i]), "'"));
      continue;
    }
    std::string record;
    results[i] = Decide(ids[i], lookup, now, &record);
    if (results[i].ok() && results[i]->verdict == Verdict::kReserved) {
      batch.Put(cf_, keys[k], record);
      reserved.push_back(i);
    }
  }
  if (!reserved.empty()) {
    if (absl::Status s = Write(&batch, absl::StrCat("reserving a batch of ", reserved.size())); !s.ok()) {
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
    const size_t first = first_index[ids[i]];
    if (first == i) continue;
    if (!results[first].ok()) {
      results[i] = results[first].status();
      continue;
    }
    Reservation repeat = *results[first];
    if (repeat.verdict == Verdict::kReserved) {
      repeat = Reservation{Verdict::kInFlight, 0, repeat.deadline, {}, false};
    }
    (repeat.verdict == Verdict::kDuplicate ? counters_.duplicate : counters_.in_flight)
        .fetch_add(1, std::memory_order_relaxed);
    results[i] = std::move(repeat);
  }
  return results;
}

// ---------------------------------------------------------------------------------------------------
// Commit, Release, Extend

absl::StatusOr<Record> Store::Impl::HeldReservation(std::string_view id, uint64_t token, std::string_view verb,
                                                    Lookup* lookup) {
  absl::StatusOr<Lookup> read = Read(id, /*count_fast_path=*/false);
  if (!read.ok()) return read.status();
  *lookup = std::move(*read);
  if (!lookup->found) {
    counters_.lease_lost.fetch_add(1, std::memory_order_relaxed);
    return absl::AbortedError(absl::StrCat("cannot ", engine::ToAbsl(verb), " '", Printable(id), "' with token ", token,
                                           ": no reservation (released, expired or never made)"));
  }
  absl::StatusOr<Record> record = engine::DecodeRecord(lookup->value);
  if (!record.ok()) {
    counters_.corrupt_records.fetch_add(1, std::memory_order_relaxed);
    return absl::DataLossError(absl::StrCat("record of '", Printable(id), "': ", record.status().message()));
  }
  if (record->token != token) {
    counters_.lease_lost.fetch_add(1, std::memory_order_relaxed);
    return absl::AbortedError(absl::StrCat("cannot ", engine::ToAbsl(verb), " '", Printable(id), "' with token ", token,
                                           ": the ID is held by token ", record->token,
                                           " (the lease was lost or the token is not this ID's)"));
  }
  return record;
}

absl::Status Store::Impl::Commit(std::string_view id, uint64_t token, std::string_view result,
                                 rocksdb::WriteBatch* effects) {
  if (absl::Status s = CheckId(id); !s.ok()) return s;
  if (absl::Status s = CheckToken(token); !s.ok()) return s;
  if (result.size() > options_.max_result_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("result is ", result.size(), " bytes; max_result_bytes is ",
                                                   options_.max_result_bytes));
  }
  Operation op(this);
  if (!op.open()) return ClosedError();
  LatencyTimer timer(&commit_latency_);
  engine::MutexLock lock(locks_.For(id));

  Lookup lookup;
  absl::StatusOr<Record> held = HeldReservation(id, token, "commit", &lookup);
  if (!held.ok()) return held.status();
  // Same token, already done: a repeated Commit (e.g. a retry after an ambiguous error that did land).
  if (held->state == RecordState::kDone) return absl::OkStatus();

  Record done;
  done.state = RecordState::kDone;
  done.deadline_us = ToMicros(clock_->Now() + options_.ttl);
  done.token = token;
  done.fingerprint = held->fingerprint;
  done.result = result;
  const std::string encoded = engine::EncodeRecord(done);

  const std::string context = absl::StrCat("committing '", Printable(id), "'");
  absl::Status status;
  if (effects != nullptr) {
    // The marker rides in the caller's batch so effects and marker land in one atomic write; the save
    // point hands the batch back exactly as the caller built it.
    effects->SetSavePoint();
    effects->Put(cf_, AsSlice(id), encoded);
    status = Write(effects, context);
    effects->RollbackToSavePoint().PermitUncheckedError();
  } else {
    rocksdb::WriteBatch batch;
    batch.Put(cf_, AsSlice(id), encoded);
    status = Write(&batch, context);
  }
  if (!status.ok()) return status;
  NoteMemtableDeadline(done.deadline_us);
  counters_.committed.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status Store::Impl::Release(std::string_view id, uint64_t token) {
  if (absl::Status s = CheckId(id); !s.ok()) return s;
  if (absl::Status s = CheckToken(token); !s.ok()) return s;
  Operation op(this);
  if (!op.open()) return ClosedError();
  engine::MutexLock lock(locks_.For(id));

  Lookup lookup;
  absl::StatusOr<Record> held = HeldReservation(id, token, "release", &lookup);
  if (!held.ok()) return held.status();
  if (held->state == RecordState::kDone) {
    return absl::FailedPreconditionError(absl::StrCat("cannot release '", Printable(id), "': already committed"));
  }
  rocksdb::WriteBatch batch;
  batch.Delete(cf_, AsSlice(id));
  if (absl::Status s = Write(&batch, absl::StrCat("releasing '", Printable(id), "'")); !s.ok()) return s;
  counters_.released.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status Store::Impl::Extend(std::string_view id, uint64_t token) {
  if (absl::Status s = CheckId(id); !s.ok()) return s;
  if (absl::Status s = CheckToken(token); !s.ok()) return s;
  Operation op(this);
  if (!op.open()) return ClosedError();
  engine::MutexLock lock(locks_.For(id));

  Lookup lookup;
  absl::StatusOr<Record> held = HeldReservation(id, token, "extend", &lookup);
  if (!held.ok()) return held.status();
  if (held->state == RecordState::kDone) {
    return absl::FailedPreconditionError(absl::StrCat("cannot extend '", Printable(id), "': already committed"));
  }
  Record renewed = *held;
  renewed.deadline_us = ToMicros(clock_->Now() + options_.lease);
  rocksdb::WriteBatch batch;
  batch.Put(cf_, AsSlice(id), engine::EncodeRecord(renewed));
  if (absl::Status s = Write(&batch, absl::StrCat("extending '", Printable(id), "'")); !s.ok()) return s;
  NoteMemtableDeadline(renewed.deadline_us);
  counters_.extended.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::StatusOr<RecordInfo> Store::Impl::Peek(std::string_view id) const {
  if (absl::Status s = CheckId(id); !s.ok()) return s;
  Operation op(this);
  if (!op.open()) return ClosedError();
  absl::StatusOr<Lookup> lookup = Read(id, /*count_fast_path=*/false);
  if (!lookup.ok()) return lookup.status();
  if (!lookup->found) return absl::NotFoundError(absl::StrCat("no record for '", Printable(id), "'"));
  absl::StatusOr<Record> record = engine::DecodeRecord(lookup->value);
  if (!record.ok()) {
    return absl::DataLossError(absl::StrCat("record of '", Printable(id), "': ", record.status().message()));
  }
  RecordInfo info;
  info.state = record->state == RecordState::kDone ? RecordInfo::State::kDone : RecordInfo::State::kReserved;
  info.token = record->token;
  info.deadline = FromMicros(record->deadline_us);
  info.result = std::string(record->result);
  info.expired = info.deadline <= clock_->Now();
  return info;
}

// ---------------------------------------------------------------------------------------------------
// Expiry and maintenance

absl::Status Store::Impl::CompactExpired() {
  Operation op(this);
  if (!op.open()) return ClosedError();
  rocksdb::FlushOptions flush;
  flush.wait = true;
  memtable_max_deadline_us_.store(std::numeric_limits<int64_t>::min(), std::memory_order_relaxed);
  memtable_dirty_.store(false, std::memory_order_relaxed);
  if (rocksdb::Status s = db_->Flush(flush, cf_); !s.ok()) return StorageError(s, "flushing before compaction");
  rocksdb::CompactRangeOptions compact;
  compact.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  compact.exclusive_manual_compaction = false;
  if (rocksdb::Status s = db_->CompactRange(compact, cf_, nullptr, nullptr); !s.ok()) {
    return StorageError(s, "compacting expired records");
  }
  return absl::OkStatus();
}

absl::Status Store::Impl::RunMaintenance() {
  Operation op(this);
  if (!op.open()) return ClosedError();
  const int64_t now_us = ToMicros(clock_->Now());

  // 1. A memtable whose records have all expired: flushing it runs the filter, which drops them all.
  if (memtable_dirty_.load(std::memory_order_relaxed) &&
      memtable_max_deadline_us_.load(std::memory_order_relaxed) <= now_us) {
    memtable_max_deadline_us_.store(std::numeric_limits<int64_t>::min(), std::memory_order_relaxed);
    memtable_dirty_.store(false, std::memory_order_relaxed);
    rocksdb::FlushOptions flush;
    flush.wait = true;
    if (rocksdb::Status s = db_->Flush(flush, cf_); !s.ok()) return StorageError(s, "maintenance flush");
  }

  // 2. SST files whose records have all expired (their deadline range says so without reading them):
  //    compact their key range, bottom level included, so the filter removes them.
  rocksdb::TablePropertiesCollection tables;
  if (rocksdb::Status s = db_->GetPropertiesOfAllTables(cf_, &tables); !s.ok()) {
    return StorageError(s, "reading table properties");
  }
  std::vector<std::string> due_files;
  for (const auto& [file, properties] : tables) {
    std::optional<engine::DeadlineRange> range = engine::DeadlineRangeOf(*properties);
    if (range && range->max_us <= now_us) due_files.push_back(std::filesystem::path(file).filename().string());
  }
  if (!due_files.empty()) {
    std::vector<rocksdb::LiveFileMetaData> live;
    db_->GetLiveFilesMetaData(&live);
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
      if (rocksdb::Status s = db_->CompactRange(compact, cf_, &begin, &end); !s.ok()) {
        return StorageError(s, "maintenance compaction");
      }
    }
  }
  return absl::OkStatus();
}

void Store::Impl::MaintenanceLoop() {
  const auto interval = absl::ToChronoNanoseconds(options_.maintenance_interval);
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(maintenance_mu_);
      if (maintenance_cv_.wait_for(lock, interval, [this] { return stop_maintenance_; })) return;
    }
    RunMaintenance().IgnoreError();  // failures surface through Health() and the next foreground call
    // RocksDB 7.8 evaluates periodic compaction only when a new version is installed; on an idle DB a
    // no-op SetOptions is what makes it look at file ages again (ROCKSDB.md §2.3).
    const absl::Time real_now = absl::Now();
    if (options_.compaction == CompactionProfile::kFifo || real_now - last_nudge_ < absl::Minutes(10)) continue;
    last_nudge_ = real_now;
    Operation op(this);
    if (!op.open()) return;
    const uint64_t period = db_->GetOptions(cf_).periodic_compaction_seconds;
    db_->SetOptions(cf_, {{"periodic_compaction_seconds", std::to_string(period)}}).PermitUncheckedError();
  }
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
  stats.committed = get(counters_.committed);
  stats.released = get(counters_.released);
  stats.extended = get(counters_.extended);
  stats.lease_lost = get(counters_.lease_lost);
  stats.fast_path_hits = get(counters_.fast_path_hits);
  stats.corrupt_records = get(counters_.corrupt_records);
  stats.storage_errors = get(counters_.storage_errors);
  stats.expired_removed = filter_->removed();
  stats.reserve_latency = reserve_latency_.Summary();
  stats.commit_latency = commit_latency_.Summary();
  return stats;
}

absl::Status Store::Impl::Health() const {
  Operation op(this);
  if (!op.open()) return ClosedError();
  return health_->error();
}

absl::Status Store::Impl::Resume() {
  Operation op(this);
  if (!op.open()) return ClosedError();
  const rocksdb::Status s = db_->Resume();
  if (!s.ok()) return engine::FromRocks(s, "resuming after a background error");
  health_->Set(absl::OkStatus());
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------------
// Store: Open, Attach and forwarding

namespace {

absl::Status OpenError(const rocksdb::Status& s, const std::string& path) {
  if (s.IsIOError() && s.ToString().find("lock") != std::string::npos) {
    return absl::UnavailableError(
        absl::StrCat("idem store at '", path, "' is held by another process (", s.ToString(), ")"));
  }
  return engine::FromRocks(s, absl::StrCat("opening idem store at '", path, "'"));
}

}  // namespace

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Store::~Store() = default;

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const Options& options, const std::string& path) {
  if (absl::Status s = engine::ValidateOptions(options); !s.ok()) return s;
  if (path.empty()) return absl::InvalidArgumentError("store path must not be empty");
  std::error_code ec;
  if (options.env == nullptr && std::filesystem::exists(path, ec) && !std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(absl::StrCat("store path '", path, "' exists and is not a directory"));
  }

  rocksdb::DBOptions db_options = engine::DBOptionsFor(options);
  auto health = std::make_shared<Impl::HealthListener>();
  db_options.listeners.push_back(health);

  std::vector<std::string> names;
  rocksdb::Status listed = rocksdb::DB::ListColumnFamilies(db_options, path, &names);
  if (!listed.ok()) names = {rocksdb::kDefaultColumnFamilyName};  // a new store
  if (std::find(names.begin(), names.end(), options.column_family) == names.end()) {
    names.push_back(options.column_family);
  }
  const rocksdb::ColumnFamilyOptions idem_cf = ColumnFamilyOptionsFor(options);
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  size_t idem_index = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == options.column_family) {
      idem_index = i;
      descriptors.emplace_back(names[i], idem_cf);
    } else {
      descriptors.emplace_back(names[i], rocksdb::ColumnFamilyOptions());
    }
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, path, descriptors, &handles, &raw);
  if (!s.ok()) return OpenError(s, path);
  std::unique_ptr<rocksdb::DB> db(raw);

  auto filter = std::static_pointer_cast<engine::ExpiryFilterFactory>(idem_cf.compaction_filter_factory);
  auto impl = std::make_unique<Impl>(options, db.get(), handles[idem_index], std::move(filter));
  if (absl::Status started = impl->Start(std::move(db), std::move(handles), std::move(health)); !started.ok()) {
    return started;
  }
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
  Options attached = options;
  attached.column_family = cf->GetName();
  auto impl = std::make_unique<Impl>(attached, db, cf, std::move(filter));
  if (absl::Status started = impl->Start(nullptr, {}, nullptr); !started.ok()) return started;
  return std::unique_ptr<Store>(new Store(std::move(impl)));
}

absl::StatusOr<Reservation> Store::Reserve(std::string_view id) { return impl_->Reserve(id); }
absl::Status Store::Commit(std::string_view id, uint64_t token, std::string_view result,
                           rocksdb::WriteBatch* effects) {
  return impl_->Commit(id, token, result, effects);
}
absl::Status Store::Release(std::string_view id, uint64_t token) { return impl_->Release(id, token); }
absl::Status Store::Extend(std::string_view id, uint64_t token) { return impl_->Extend(id, token); }
std::vector<absl::StatusOr<Reservation>> Store::ReserveBatch(absl::Span<const std::string_view> ids) {
  return impl_->ReserveBatch(ids);
}
absl::StatusOr<RecordInfo> Store::Peek(std::string_view id) const { return impl_->Peek(id); }
absl::Status Store::CompactExpired() { return impl_->CompactExpired(); }
Stats Store::GetStats() const { return impl_->GetStats(); }
absl::Status Store::Health() const { return impl_->Health(); }
absl::Status Store::Resume() { return impl_->Resume(); }
absl::Status Store::Close() { return impl_->Close(); }
rocksdb::DB* Store::db() const { return impl_->db(); }
rocksdb::ColumnFamilyHandle* Store::column_family() const { return impl_->cf(); }

}  // namespace idem
