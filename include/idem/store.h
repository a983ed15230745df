// idem/store.h — the idempotency store. Start here.
//
// A Store answers "is this event new?" for a consumer of an at-least-once queue, and records "done"
// atomically with the consumer's own writes:
//
//   auto r = store->Reserve(event_id);                      // kReserved: yours, under a lease and a token
//   if (r->verdict == idem::Verdict::kReserved) {           // kDuplicate: done before, r->result is stored
//     rocksdb::WriteBatch effects;  /* the consumer's writes to its own column families */
//     store->Commit(event_id, r->token, "result", &effects); // marker + effects in one atomic write
//   }                                                        // kInFlight: another worker holds the lease
//
// Records live in one RocksDB column family, one per event ID, under RecordKey(id): for a store made by
// this release an 8-byte hash of the ID followed by the ID (so that the memtable's hash buckets are
// even whatever the IDs look like); for a store made before, the ID itself. A committed ID is remembered for
// Options::ttl; a reservation for Options::lease. Records past their deadline read as absent at once and
// are removed from disk by a compaction filter.
//
// Thread safety: a Store is safe for concurrent use from any number of threads without external
// synchronization. Operations on the same ID are serialized inside the store; exactly one caller wins a
// reservation. Close() may race with other calls: they complete or fail with FailedPrecondition.
// One store, one Store: a second Store on the same directory or column family in one process is
// refused (two would hand out the same tokens).
//
// Who writes what: the records column family and the metadata key belong to the Store. Effects
// batches may not touch them (Commit refuses); writing them directly through db() voids every promise.
//
// Ownership: Open owns its RocksDB instance and closes it with the Store. Attach borrows the caller's DB
// and column family handle; both must outlive the Store.
//
// Errors (absl::StatusCode), common to every call:
//   kInvalidArgument    empty ID, ID over max_id_bytes, result over max_result_bytes, token 0, a
//                       ReserveOptions::lease outside (0, ttl), effects Commit refuses (see Commit).
//   kAborted            the token no longer holds the reservation (lease taken over, released, never
//                       issued for this ID, or below TokenFloor(): issued by an earlier process, an
//                       earlier Store on this DB or an earlier owner, whatever the store holds for the
//                       ID). The caller lost: do not apply its effects.
//   kDataLoss           the stored record for this ID is corrupt. Other IDs are unaffected.
//   kUnavailable        RocksDB reported an I/O error, no space, or a background error made the DB
//                       read-only; free disk space is below min_free_disk_bytes ("disk nearly full",
//                       nothing written); the store is reopening or down. Retry after the store is
//                       healthy (Health(), Resume()).
//   kFailedPrecondition the store is closed; the call does not fit the record's state (e.g. Release of a
//                       committed ID); the store's fencing tokens are used up (Reserve).
// A write that returned an error other than kInvalidArgument/kAborted/kFailedPrecondition has an
// UNKNOWN outcome: it may have reached the WAL and be visible after recovery. Treat it as "maybe done":
// do not acknowledge the event, let the queue redeliver, and Reserve will tell the truth.
#ifndef IDEM_STORE_H_
#define IDEM_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "idem/options.h"
#include "idem/stats.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
struct ColumnFamilyOptions;
class WriteBatch;
}  // namespace rocksdb

namespace idem {
namespace engine {
struct StoreAccess;  // the engine's own access (engine/store_access.h), for a PartitionSet's stores
}  // namespace engine

enum class Verdict {
  kReserved,   // new: the caller owns it until `deadline`, identified by `token`
  kDuplicate,  // committed before and still remembered: skip it; `result` is what Commit stored
  kInFlight,   // another holder's lease is live until `deadline`: do not ack, retry after it
  // Only when the caller passed a payload fingerprint: the ID is known (done or in flight) with a
  // DIFFERENT fingerprint. A producer reused an ID for another payload; never skip it silently.
  kConflict,
};

// "reserved", "duplicate", "in_flight", "conflict": for logs and metric labels (OutcomeName's sibling).
std::string_view VerdictName(Verdict verdict);

// Per-call options of Reserve.
struct ReserveOptions {
  // A hash of the event's payload, kept with the record; a later delivery of the same ID with another
  // fingerprint is kConflict instead of kDuplicate. Records stored without one never conflict.
  std::optional<uint64_t> fingerprint;
  // If the ID is in flight, wait up to this long (real time) for its holder to Commit or Release, or
  // for its lease to end, and answer then: the duplicate's result, or a reservation. Waiting is
  // in-process (woken by the holder's Commit/Release), never polling RocksDB. Zero: answer at once.
  absl::Duration wait = absl::ZeroDuration();
  // The lease of this reservation, instead of Options::lease: e.g. the time the caller has left to
  // handle the event. Must be positive and shorter than Options::ttl (else kInvalidArgument, nothing
  // reserved). Extend renews by Options::lease.
  std::optional<absl::Duration> lease;
};

struct Reservation {
  Verdict verdict = Verdict::kInFlight;
  // Fencing token, when kReserved. Never 0; never repeats for an ID, across restarts too. Pass it to
  // downstream systems that can fence, so a zombie holder's late writes are refused there as well.
  // When kDuplicate: the token the commit was made with. Otherwise 0.
  uint64_t token = 0;
  // Lease end (kReserved, kInFlight) or retention end (kDuplicate).
  absl::Time deadline;
  // The stored result, when kDuplicate.
  std::string result;
  // kReserved replaced a reservation that was neither committed nor released. Its holder got as far as
  // Reserve and may have started effects outside the DB (effects in the DB land only with a Commit,
  // which did not happen): a handler with external effects checks or compensates them.
  bool takeover = false;
  // With takeover: the replaced reservation was made by an earlier process on this store (or an
  // earlier, closed Store on this DB): its holder is gone, so it was taken over at once instead of after
  // its lease (only durable reservations survive a restart to be found). false: its lease ran out in
  // this process, and its holder may still be running; fence downstream writes with the token.
  bool holder_gone = false;
  // With takeover: the token of the reservation replaced (the last one a downstream fence may have seen).
  uint64_t previous_token = 0;
};

// How a stored record reads (Peek); for tools and diagnostics.
struct RecordInfo {
  enum class State { kReserved, kDone };
  State state = State::kReserved;
  uint64_t token = 0;
  absl::Time deadline;
  std::string result;
  bool expired = false;  // past its deadline: Reserve treats it as absent
};

// One element of CommitBatch.
struct CommitRequest {
  std::string_view id;
  uint64_t token = 0;
  std::string_view result;
  rocksdb::WriteBatch* effects = nullptr;  // this event's writes; left as passed
};

// A reservation found in RocksDB by InDoubt(): a previous process reserved it and did not commit or
// release before it stopped. It stays in flight until `deadline` (then the next Reserve takes it over).
struct InDoubtReservation {
  std::string id;
  uint64_t token = 0;
  absl::Time deadline;
};

// A column family of the caller's that Store::Open opens (creating it if missing) with the store's DB,
// for effects that commit atomically with the markers.
struct ColumnFamilySpec {
  std::string name;
  // Its options, kept for every reopen; null: RocksDB's defaults, with a memtable no larger than the store's.
  std::shared_ptr<const rocksdb::ColumnFamilyOptions> options;
};

class Store {
 public:
  // Opens a RocksDB at `path` with the idem column family, creating the store (and missing parent
  // directories, like mkdir -p) unless Options::create_if_missing is false. The store's metadata (its
  // identity and token high-water mark) lives in the DB's default column family.
  // Open refuses, changing nothing:
  //   kInvalidArgument    bad options; a path that is or runs through a file; a directory holding other
  //                       files and no RocksDB (a wrong path).
  //   kFailedPrecondition the store is already open in this process, under any spelling of its path
  //                       (symlinks, trailing slashes: by device and inode); a read-only file system;
  //                       a DB that holds an idem store under another column-family name and none under
  //                       Options::column_family (Open never starts a second store beside it; the
  //                       message names the existing store's family); a column family named
  //                       Options::column_family that exists but is not an idem store (no store metadata
  //                       for it, e.g. one of the caller's families): a store opens only what its
  //                       metadata says is its own, and never adopts an existing column family.
  //   kPermissionDenied   the directory cannot be created or written.
  //   kNotFound           create_if_missing is false and there is no store.
  //   kUnavailable        the DB is held by another process, or an I/O error: retry later.
  //   kDataLoss           RocksDB or idem's metadata reports corruption, or the WAL is corrupt before its
  //                       tail (acknowledged commits would be forgotten); see `idemctl recover`.
  static absl::StatusOr<std::unique_ptr<Store>> Open(const Options& options, const std::string& path);
  // Open, with the caller's own column families: each is opened with its options, or created if the DB
  // lacks it, on this and every later Open and on every reopen by Resume; family(name) gives its
  // handle. kInvalidArgument (nothing opened) for an empty or repeated name, "default", or the store's
  // own column family. Otherwise as Open.
  static absl::StatusOr<std::unique_ptr<Store>> Open(const Options& options, const std::string& path,
                                                     const std::vector<ColumnFamilySpec>& families);

  // Uses the column family `cf` of the caller's open `db`, so that Commit can write the caller's effects
  // (other column families of `db`) atomically with the marker. The store's metadata goes into the DB's
  // default column family under a reserved key (it starts with a NUL byte; effects may not write it).
  // kFailedPrecondition, changing nothing, when: `cf` was not opened with ColumnFamilyOptionsFor of
  // options with the same ttl, lease and compaction profile (expiry would silently never happen, or
  // happen by another rule); the default column family has a compaction filter or FIFO compaction (it
  // could drop the metadata, and tokens would repeat); another Store in this process uses `cf`, or
  // another DB instance in this process has the same directory open.
  // REQUIRES: db and cf outlive the Store.
  static absl::StatusOr<std::unique_ptr<Store>> Attach(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf,
                                                       const Options& options);

  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Check-and-reserve. Writes a reservation (lease end = now + lease) unless the ID is a duplicate or in
  // flight. Errors: see the header comment.
  absl::StatusOr<Reservation> Reserve(std::string_view id);
  absl::StatusOr<Reservation> Reserve(std::string_view id, const ReserveOptions& options);

  // Marks `id` done with `result` (kept for ttl and returned to later duplicates), writing `effects` (if
  // given) in the same atomic WriteBatch. Succeeds while `token` still holds the reservation, even after
  // its lease ended if nobody took it over. Repeating a successful Commit with the same token returns OK
  // and writes nothing, also after a Commit whose outcome was unknown did land (on the same Store: a
  // later Store's floor is above the token, and it answers kAborted). `effects` is left as
  // the caller passed it. Effects may write any column family of the DB except idem's records and
  // idem's metadata key; nothing else of idem's may be written by them.
  // Errors: kAborted (lease lost: effects NOT written); kInvalidArgument (nothing written: bad ID,
  // result over max_result_bytes, effects that write idem's records or metadata, or an effects batch
  // that refuses the marker, e.g. one built with a byte limit); kUnavailable (outcome unknown);
  // kDataLoss; kFailedPrecondition.
  absl::Status Commit(std::string_view id, uint64_t token, std::string_view result = {},
                      rocksdb::WriteBatch* effects = nullptr);

  // What Commit would refuse with kInvalidArgument whatever the reservation's state — a result over
  // max_result_bytes, effects that write idem's records or metadata or outside effect_column_families —
  // checked without writing anything. A caller that lets other work see an event's effects before they
  // commit (a batch whose later events read the earlier ones' writes) validates them here first, so an
  // event refused at commit was never seen. Errors: kInvalidArgument (as Commit's), kFailedPrecondition
  // (closed), kUnavailable (reopening).
  absl::Status ValidateCommit(std::string_view result, const rocksdb::WriteBatch* effects) const;

  // Drops the reservation so the ID is new again at once (the handler failed; let the redelivery retry).
  // Errors: kAborted (not held by token), kFailedPrecondition (already committed), kUnavailable.
  absl::Status Release(std::string_view id, uint64_t token);

  // Renews the lease: its end becomes now + lease. Errors as Release.
  absl::Status Extend(std::string_view id, uint64_t token);

  // Commit for a polled batch: every request that still holds its reservation is committed, with its
  // effects, in ONE atomic write (one WAL append, one fsync with sync = true). Element i answers
  // requests[i] as Commit would; requests that lost their lease get kAborted and their effects are not
  // written; a storage error fails every request that was to be written (outcome unknown).
  std::vector<absl::Status> CommitBatch(absl::Span<const CommitRequest> requests);
  // With a tag the commit hook receives with this write (CommittedWrite::tag): what the caller needs to
  // say about the write in its changelog, carried with it rather than beside it.
  std::vector<absl::Status> CommitBatch(absl::Span<const CommitRequest> requests, int64_t tag);

  // Reserve for many IDs with one MultiGet and one write. Element i answers ids[i]; a repeated ID within
  // the batch is kInFlight after its first occurrence. An ID-level error (e.g. too long) fails only its
  // element; a storage error fails every element that needed the write.
  std::vector<absl::StatusOr<Reservation>> ReserveBatch(absl::Span<const std::string_view> ids);
  // With a payload fingerprint per ID (ReserveOptions::fingerprint; nullopt: none for that ID): an ID
  // stored or held with another fingerprint answers kConflict, as Reserve does, and so does a repeat
  // within the batch whose fingerprint differs from its first occurrence's. kInvalidArgument in every
  // element when `fingerprints` is neither empty nor one per ID.
  std::vector<absl::StatusOr<Reservation>> ReserveBatch(absl::Span<const std::string_view> ids,
                                                        absl::Span<const std::optional<uint64_t>> fingerprints);

  // Deletes whatever the store holds for `id` (a reservation, a done record, or a record that no longer
  // decodes) so that the ID is new again. For operators (`idemctl forget`), never for normal
  // processing: forgetting a committed ID admits its next redelivery as new, which may apply its effects
  // a second time. A holder of a forgotten reservation gets kAborted on Commit.
  // Errors: kNotFound (nothing stored), kInvalidArgument, kUnavailable (outcome unknown),
  // kFailedPrecondition (closed).
  absl::Status Forget(std::string_view id);

  // Reads the record of `id` without changing anything. NotFound if there is none (expired records are
  // returned with expired = true until compaction removes them).
  absl::StatusOr<RecordInfo> Peek(std::string_view id) const;

  // Reservations persisted in RocksDB and neither committed nor released (only with
  // durable_reservations), at most `limit` of them, in key order: those an earlier process left (token
  // below TokenFloor(): their holders are gone, and the next Reserve of each takes it over at once), and
  // this process's own live ones (token at or above it).
  absl::StatusOr<std::vector<InDoubtReservation>> InDoubt(size_t limit = SIZE_MAX) const;

  // Flushes and compacts the whole column family now, removing every expired record from disk.
  absl::Status CompactExpired();

  Stats GetStats() const;

  // The first fencing token this Store could issue: above every token issued before this Store opened
  // (by an earlier process, or an earlier Store on this DB) and above Options::token_floor. Their
  // holders are gone: Commit, Release and Extend with such a token answer kAborted, and a reservation
  // found under it is taken over at once. Every token this Store issues is at or above it. It stays the
  // same across Resume.
  uint64_t TokenFloor() const;

  // OK while the store accepts writes; otherwise why not: a background error (kUnavailable), free disk
  // space below Options::min_free_disk_bytes (kUnavailable, "disk nearly full"), or the store's
  // directory gone (kDataLoss).
  absl::Status Health() const;
  // Recovers from a background error: DB::Resume, and for a store from Open whose error RocksDB cannot
  // resume from (fatal WAL/SST write errors), closes and reopens the DB, which replays the WAL.
  // kUnavailable if the fault persists (retry later). While a reopen runs, other calls get kUnavailable.
  // A reopen never creates a store: if the directory no longer holds this store (deleted, replaced by
  // another store) the store stays down and Resume answers kDataLoss. kFailedPrecondition once Close
  // was called: nothing reopens after Close. In-memory leases survive a reopen. An attached store can
  // only DB::Resume; reopening is the caller's.
  absl::Status Resume();

  // Stops background work and, for a Store from Open, closes the DB; Close wins over a Resume that is
  // running (it waits for it, then closes whatever it opened). Later calls, Resume included, get
  // kFailedPrecondition. Returns the first error RocksDB reported while closing. Idempotent and safe to
  // call from several threads.
  absl::Status Close();

  // The underlying DB and column family, for callers that want to add their own writes to `effects`.
  // Valid until Close(), or until a Resume() that had to reopen the DB: fetch them again per use rather
  // than caching them. For Open, the caller's own column families are given to Open (ColumnFamilySpec)
  // and their handles taken from family() per use.
  rocksdb::DB* db() const;
  rocksdb::ColumnFamilyHandle* column_family() const;
  // For a Store from Open: the handle of the DB's column family `name` (one given to Open, or any other
  // the DB holds; "default" too), or null (no such family, idem's own records, an attached store, or
  // the store closed or reopening). Valid until Close or a Resume that reopens the DB: fetch it per
  // use. (A WriteBatch keeps only the family's ID, which a reopen does not change.)
  rocksdb::ColumnFamilyHandle* family(std::string_view name) const;

  // The key under which this store keeps `id`'s record in column_family(), for tools and tests that
  // read the column family directly (its layout is fixed when the store is made; see the header
  // comment). Iterating the column family needs ReadOptions::total_order_seek (options.h). Thread-safe.
  std::string RecordKey(std::string_view id) const;

  class Impl;
  friend struct engine::StoreAccess;

 private:
  explicit Store(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace idem

#endif  // IDEM_STORE_H_
