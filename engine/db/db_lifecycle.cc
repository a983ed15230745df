#include "engine/db/db_lifecycle.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "util/status_util.h"

namespace idem::engine {

void HealthListener::OnBackgroundError(rocksdb::BackgroundErrorReason /*reason*/, rocksdb::Status* status) {
  // A soft error leaves writes working; only errors that stop writes make the store unavailable.
  if (status != nullptr && !status->ok() && status->severity() >= rocksdb::Status::Severity::kHardError) {
    Set(util::FromRocks(*status, "RocksDB background error"));
  }
}

void HealthListener::OnErrorRecoveryEnd(const rocksdb::BackgroundErrorRecoveryInfo& info) {
  if (info.new_bg_error.ok()) Set(absl::OkStatus());
}

absl::Status HealthListener::error() const {
  util::MutexLock lock(&mu_);
  return error_;
}

void HealthListener::Set(absl::Status status) {
  util::MutexLock lock(&mu_);
  if (!status.ok() && status.code() != absl::StatusCode::kUnavailable) {
    status = absl::UnavailableError(status.message());
  }
  error_ = std::move(status);
}

DbLifecycle::DbLifecycle(OpenedDb opened, Opener reopen, std::shared_ptr<HealthListener> health)
    : reopen_(std::move(reopen)), health_(health ? std::move(health) : std::make_shared<HealthListener>()) {
  db_ = opened.db.get();
  records_ = opened.records;
  owned_ = std::move(opened);
}

DbLifecycle::DbLifecycle(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* records, std::shared_ptr<HealthListener> health,
                         std::function<absl::Status()> shared_resume)
    : health_(health ? std::move(health) : std::make_shared<HealthListener>()),
      shared_resume_(std::move(shared_resume)),
      db_(db),
      records_(records) {}

DbLifecycle::~DbLifecycle() { Close().IgnoreError(); }

void DbLifecycle::SetHooks(OnReopen on_reopen, BeforeClose before_close) {
  on_reopen_ = std::move(on_reopen);
  before_close_ = std::move(before_close);
}

absl::Status DbLifecycle::RefusalFor(State state) const {
  switch (state) {
    case State::kClosed: return absl::FailedPreconditionError("idem store is closed");
    case State::kReopening:
      return absl::UnavailableError("idem store is reopening its DB after a storage error; retry");
    case State::kDown: {
      // kUnavailable even when the store is gone for good (kDataLoss from Resume): a call's kDataLoss
      // means "this ID's record is corrupt", and a consumer would dead-letter every event for it. The
      // consumer must pause instead; Resume says what is wrong.
      util::MutexLock lock(&down_mu_);
      return absl::UnavailableError(
          absl::StrCat("idem store is down (", down_status_.message(), "); Resume() to retry"));
    }
    case State::kOpen: break;
  }
  return absl::OkStatus();
}

DbLifecycle::Pin::Pin(const DbLifecycle& lifecycle) : lifecycle_(lifecycle) {
  // The flag and the state are checked before the lock: glibc's rwlock prefers readers, so without
  // them a steady stream of calls would keep Close (or a reopen) waiting forever.
  if (lifecycle_.close_requested_.load(std::memory_order_acquire)) {
    status_ = lifecycle_.RefusalFor(State::kClosed);
    return;
  }
  if (State s = lifecycle_.state(); s != State::kOpen) {
    status_ = lifecycle_.RefusalFor(s);
    return;
  }
  lifecycle_.db_mu_.ReaderLock();
  // Checked again under the lock: a transition may have begun while we waited for it.
  State s = lifecycle_.state();
  if (lifecycle_.close_requested_.load(std::memory_order_acquire)) s = State::kClosed;
  if (s != State::kOpen) {
    lifecycle_.db_mu_.ReaderUnlock();
    status_ = lifecycle_.RefusalFor(s);
    return;
  }
  held_ = true;
}

DbLifecycle::Pin::~Pin() {
  if (held_) lifecycle_.db_mu_.ReaderUnlock();
}

absl::Status DbLifecycle::Resume() {
  if (close_requested_.load(std::memory_order_acquire)) return RefusalFor(State::kClosed);
  // The owner's recovery suspends and adopts this lifecycle itself: no lock of ours is held for it.
  if (shared_resume_) return shared_resume_();
  util::MutexLock transition(&transition_mu_);
  const State state = state_.load(std::memory_order_acquire);
  if (state == State::kClosed || close_requested_.load(std::memory_order_acquire)) {
    return RefusalFor(State::kClosed);
  }
  if (state == State::kOpen) {
    rocksdb::Status s;
    {
      util::ReaderLock pin(&db_mu_);
      s = db_->Resume();
    }
    if (s.ok()) {
      health_->Set(absl::OkStatus());
      return absl::OkStatus();
    }
    // A caller's DB can only be resumed in place; reopening it is the caller's business.
    if (!reopen_) return util::FromRocks(s, "resuming after a background error");
  }
  return Reopen();
}

absl::Status DbLifecycle::Reopen() {
  // RocksDB refuses to resume from fatal errors (e.g. a failed WAL write): close and reopen, which
  // replays the WAL. New calls are turned away with kUnavailable while this runs.
  state_.store(State::kReopening, std::memory_order_release);
  absl::Status result;
  {
    util::WriterLock exclusive(&db_mu_);
    CloseOwned().IgnoreError();  // it reports the very error we are recovering from
    if (close_requested_.load(std::memory_order_acquire)) {
      result = RefusalFor(State::kClosed);  // Close is waiting: open nothing
    } else {
      absl::StatusOr<OpenedDb> opened = reopen_();
      if (opened.ok()) {
        db_ = opened->db.get();
        records_ = opened->records;
        if (on_reopen_) result = on_reopen_(opened->db.get(), opened->records);
        owned_ = *std::move(opened);
        if (!result.ok()) CloseOwned().IgnoreError();
      } else {
        result = opened.status();
      }
    }
  }
  if (close_requested_.load(std::memory_order_acquire)) {
    // Close came while we reopened; it closes whatever is open once we return.
    return RefusalFor(State::kClosed);
  }
  if (result.ok()) {
    health_->Set(absl::OkStatus());
    state_.store(State::kOpen, std::memory_order_release);
    return absl::OkStatus();
  }
  if (result.code() == absl::StatusCode::kNotFound || result.code() == absl::StatusCode::kDataLoss) {
    // No store where this one was (the opener never creates), or another store (the hook's identity
    // check): permanent until an operator acts.
    result = absl::DataLossError(
        absl::StrCat("the store's directory no longer holds this store (", result.message(),
                     "): it was deleted or replaced; refusing to go on with an empty store, which would admit every "
                     "remembered ID again"));
  } else {
    result = absl::UnavailableError(
        absl::StrCat("reopening the DB after a storage error failed (", result.message(), "); Resume() again later"));
  }
  {
    util::MutexLock lock(&down_mu_);
    down_status_ = result;
  }
  health_->Set(result);
  state_.store(State::kDown, std::memory_order_release);
  return result;
}

void DbLifecycle::Suspend() {
  util::MutexLock transition(&transition_mu_);
  if (state_.load(std::memory_order_acquire) == State::kClosed || close_requested_.load(std::memory_order_acquire)) {
    return;
  }
  state_.store(State::kReopening, std::memory_order_release);
  // Waits for the calls in progress; a Pin taken later sees kReopening under the lock and is refused.
  util::WriterLock exclusive(&db_mu_);
  db_ = nullptr;
  records_ = nullptr;
}

absl::Status DbLifecycle::Adopt(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* records) {
  util::MutexLock transition(&transition_mu_);
  if (state_.load(std::memory_order_acquire) == State::kClosed || close_requested_.load(std::memory_order_acquire)) {
    return RefusalFor(State::kClosed);
  }
  absl::Status result;
  {
    util::WriterLock exclusive(&db_mu_);
    db_ = db;
    records_ = records;
    if (on_reopen_) result = on_reopen_(db, records);
  }
  if (result.ok()) {
    health_->Set(absl::OkStatus());
    state_.store(State::kOpen, std::memory_order_release);
    return absl::OkStatus();
  }
  {
    util::MutexLock lock(&down_mu_);
    down_status_ = result;
  }
  state_.store(State::kDown, std::memory_order_release);
  return result;
}

absl::Status DbLifecycle::CloseOwned() {
  absl::Status first;
  if (owned_.db != nullptr) {
    for (rocksdb::ColumnFamilyHandle* handle : owned_.handles) {
      rocksdb::Status s = owned_.db->DestroyColumnFamilyHandle(handle);
      if (!s.ok() && first.ok()) first = util::FromRocks(s, "closing column family");
    }
    rocksdb::Status s = owned_.db->Close();
    if (!s.ok() && first.ok()) first = util::FromRocks(s, "closing the DB");
  }
  owned_.handles.clear();
  owned_.db.reset();
  owned_.records = nullptr;
  if (reopen_) {
    db_ = nullptr;
    records_ = nullptr;
  }
  return first;
}

absl::Status DbLifecycle::Close() {
  close_requested_.store(true, std::memory_order_release);
  util::MutexLock transition(&transition_mu_);  // waits for a running Resume
  if (state_.load(std::memory_order_acquire) == State::kClosed) return close_status_;
  state_.store(State::kClosed, std::memory_order_release);
  util::WriterLock exclusive(&db_mu_);  // waits for calls in progress
  if (before_close_ && db_ != nullptr) close_status_ = before_close_(db_);
  if (absl::Status s = CloseOwned(); !s.ok() && close_status_.ok()) close_status_ = s;
  return close_status_;
}

}  // namespace idem::engine
