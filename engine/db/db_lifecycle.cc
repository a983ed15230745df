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
  util::WriterLock exclusive(&db_mu_);
  TakeOwned(std::move(opened));
}

void DbLifecycle::TakeOwned(OpenedDb opened) {
  db_ = opened.db.get();
  records_ = opened.records;
  owned_db_ = std::move(opened.db);
  util::MutexLock lock(&families_mu_);
  for (rocksdb::ColumnFamilyHandle* h : opened.handles) families_.emplace(h->GetName(), h);
}

DbLifecycle::DbLifecycle(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* records, std::shared_ptr<HealthListener> health,
                         std::function<absl::Status()> shared_resume)
    : health_(health ? std::move(health) : std::make_shared<HealthListener>()),
      shared_resume_(std::move(shared_resume)),
      db_(db),
      records_(records) {}

DbLifecycle::~DbLifecycle() { Close().IgnoreError(); }

void DbLifecycle::SetHooks(Hooks hooks) { hooks_ = std::move(hooks); }

rocksdb::ColumnFamilyHandle* DbLifecycle::handle(std::string_view name) const {
  util::MutexLock lock(&families_mu_);
  auto it = families_.find(name);
  return it == families_.end() ? nullptr : it->second;
}

std::vector<std::string> DbLifecycle::FamilyNames() const {
  util::MutexLock lock(&families_mu_);
  std::vector<std::string> out;
  out.reserve(families_.size());
  for (const auto& [name, handle] : families_) out.push_back(name);
  return out;
}

absl::StatusOr<rocksdb::ColumnFamilyHandle*> DbLifecycle::CreateFamily(const std::string& name,
                                                                       const rocksdb::ColumnFamilyOptions& options) {
  absl::StatusOr<std::vector<rocksdb::ColumnFamilyHandle*>> created = CreateFamilies({{name, options}});
  if (!created.ok()) return created.status();
  return created->front();
}

absl::StatusOr<std::vector<rocksdb::ColumnFamilyHandle*>> DbLifecycle::CreateFamilies(
    const std::vector<rocksdb::ColumnFamilyDescriptor>& families) {
  if (!reopen_) return absl::FailedPreconditionError("column families of a caller's DB are the caller's");
  for (const rocksdb::ColumnFamilyDescriptor& family : families) {
    if (handle(family.name) != nullptr) {
      return absl::AlreadyExistsError(absl::StrCat("column family '", family.name, "' is open"));
    }
  }
  std::vector<rocksdb::ColumnFamilyHandle*> created;
  // db_ is stable under the caller's Pin; families_mu_ is not held across RocksDB's call (it writes
  // the MANIFEST and an OPTIONS file). RocksDB hands back the handles it made even when it fails part
  // way: they are kept (destroyed with the DB) either way.
  const rocksdb::Status s = db_->CreateColumnFamilies(families, &created);
  {
    util::MutexLock lock(&families_mu_);
    for (rocksdb::ColumnFamilyHandle* h : created) families_.emplace(h->GetName(), h);
  }
  if (!s.ok()) return util::FromRocks(s, "creating column families");
  return created;
}

absl::Status DbLifecycle::DropFamily(std::string_view name) { return DropFamilies({std::string(name)}); }

absl::Status DbLifecycle::DropFamilies(const std::vector<std::string>& names) {
  if (!reopen_) return absl::FailedPreconditionError("column families of a caller's DB are the caller's");
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  for (const std::string& name : names) {
    if (rocksdb::ColumnFamilyHandle* h = handle(name); h != nullptr) handles.push_back(h);
  }
  if (handles.empty()) return absl::OkStatus();
  if (rocksdb::Status s = db_->DropColumnFamilies(handles); !s.ok()) {
    return util::FromRocks(s, "dropping column families");
  }
  util::MutexLock lock(&families_mu_);
  for (rocksdb::ColumnFamilyHandle* h : handles) {
    auto it = families_.find(h->GetName());
    if (it != families_.end() && it->second == h) {
      dropped_.push_back(h);  // a caller may still hold it: destroyed when the DB closes or reopens
      families_.erase(it);
    }
  }
  return absl::OkStatus();
}

absl::Status DbLifecycle::RefusalFor(State state) const {
  switch (state) {
    case State::kClosed: return absl::FailedPreconditionError(absl::StrCat(subject_, " is closed"));
    case State::kReopening:
      return absl::UnavailableError(absl::StrCat(subject_, " is reopening its DB after a storage error; retry"));
    case State::kDown: {
      // kUnavailable even when the store is gone for good (kDataLoss from Resume): a call's kDataLoss
      // means "this ID's record is corrupt", and a consumer would dead-letter every event for it. The
      // consumer must pause instead; Resume says what is wrong.
      util::MutexLock lock(&down_mu_);
      return absl::UnavailableError(
          absl::StrCat(subject_, " is down (", down_status_.message(), "); Resume() to retry"));
    }
    case State::kOpen: break;
  }
  return absl::OkStatus();
}

DbLifecycle::Pin::Pin(const DbLifecycle& lifecycle, Wait wait) : lifecycle_(lifecycle) {
  // Only an owned DB's reopen holds the transition lock from start to end, so only it can be waited
  // for (a caller's DB is suspended until its owner adopts it again).
  const bool wait_for_reopen = wait == Wait::kWaitForReopen && lifecycle_.reopen_;
  while (true) {
    // The flag and the state are checked before the lock: glibc's rwlock prefers readers, so without
    // them a steady stream of calls would keep Close (or a reopen) waiting forever.
    if (lifecycle_.close_requested_.load(std::memory_order_acquire)) {
      status_ = lifecycle_.RefusalFor(State::kClosed);
      return;
    }
    State s = lifecycle_.state();
    if (s == State::kReopening && wait_for_reopen) {
      util::MutexLock transition(&lifecycle_.transition_mu_);  // the reopen ends
      continue;
    }
    if (s != State::kOpen) {
      status_ = lifecycle_.RefusalFor(s);
      return;
    }
    lifecycle_.db_mu_.ReaderLock();
    // Checked again under the lock: a transition may have begun while we waited for it.
    s = lifecycle_.state();
    if (lifecycle_.close_requested_.load(std::memory_order_acquire)) s = State::kClosed;
    if (s == State::kOpen) {
      held_ = true;
      return;
    }
    lifecycle_.db_mu_.ReaderUnlock();
    if (s != State::kReopening || !wait_for_reopen) {
      status_ = lifecycle_.RefusalFor(s);
      return;
    }
  }
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
    if (hooks_.before_reopen) hooks_.before_reopen();
    CloseOwned().IgnoreError();  // it reports the very error we are recovering from
    if (close_requested_.load(std::memory_order_acquire)) {
      result = RefusalFor(State::kClosed);  // Close is waiting: open nothing
    } else {
      absl::StatusOr<OpenedDb> opened = reopen_();
      if (opened.ok()) {
        TakeOwned(*std::move(opened));
        if (hooks_.on_reopen) result = hooks_.on_reopen(db_, records_);
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
        absl::StrCat("the directory of ", subject_, " no longer holds it (", result.message(),
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
    if (hooks_.on_reopen) result = hooks_.on_reopen(db, records);
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
  generation_.fetch_add(1, std::memory_order_acq_rel);
  {
    util::MutexLock lock(&families_mu_);
    if (owned_db_ != nullptr) {
      for (const auto& [name, handle] : families_) {
        rocksdb::Status s = owned_db_->DestroyColumnFamilyHandle(handle);
        if (!s.ok() && first.ok()) first = util::FromRocks(s, "closing column family");
      }
      for (rocksdb::ColumnFamilyHandle* handle : dropped_) {
        owned_db_->DestroyColumnFamilyHandle(handle).PermitUncheckedError();  // a dropped family: nothing to lose
      }
    }
    families_.clear();
    dropped_.clear();
  }
  if (owned_db_ != nullptr) {
    rocksdb::Status s = owned_db_->Close();
    if (!s.ok() && first.ok()) first = util::FromRocks(s, "closing the DB");
  }
  owned_db_.reset();
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
  if (hooks_.before_close && db_ != nullptr) close_status_ = hooks_.before_close(db_);
  if (absl::Status s = CloseOwned(); !s.ok() && close_status_.ok()) close_status_ = s;
  return close_status_;
}

}  // namespace idem::engine
