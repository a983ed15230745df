// Reads RocksDB's WAL files on our own, for the one thing RocksDB's recovery cannot tell: whether damage
// at the end of a WAL file is a torn tail or corruption with acknowledged writes after it.
//
// RocksDB reads a WAL in 32 KiB blocks; in the last block of a file, a record whose length runs past the
// end of the data looks exactly like a write cut short by a crash, and recovery drops it and everything
// after it quietly, even with kTolerateCorruptedTailRecords. A flipped bit in a length field does that.
// A real torn tail has nothing well-formed after the damage; corruption does: so after the first
// malformed record we look for any later record whose CRC32C checks. Found: kDataLoss.
//
// Format (RocksDB db/log_format.h, stable since LevelDB): 32 KiB blocks of records
//   record := checksum(fixed32, masked crc32c of type+payload) length(fixed16) type(u8) payload
//   type   := 1 full | 2 first | 3 middle | 4 last (0: padding/preallocated zeros)
// and the payloads of a full or first..last sequence are a WriteBatch: sequence(fixed64) count(fixed32)
// records.
//
// Thread safety: functions of their arguments.
#ifndef IDEM_ENGINE_DB_WAL_SCAN_H_
#define IDEM_ENGINE_DB_WAL_SCAN_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace idem::engine {

struct WalBatch {
  uint64_t offset = 0;    // of its first record in the file
  uint64_t sequence = 0;  // of its first write
  uint32_t count = 0;
  std::string rep;  // the WriteBatch as RocksDB encodes it
};

struct WalScan {
  std::string file;
  std::vector<WalBatch> batches;          // every well-formed batch, before and after any damage
  std::optional<uint64_t> damage_offset;  // the first malformed record, if any
  bool well_formed_after_damage = false;  // corruption, not a torn tail
};

// Scans `file` from `from` (a multiple of the 32 KiB block), reading nothing before it. Offsets in the
// result are the file's. kUnavailable when it cannot be read.
absl::StatusOr<WalScan> ScanWal(const std::string& file, uint64_t from = 0);

// The WAL files (*.log) of the DB directory `dir`, oldest first.
std::vector<std::string> WalFiles(const std::string& dir);

// kDataLoss naming the file and offset when the last block of a WAL file in `dir` is damaged with
// well-formed records after the damage; OK otherwise (also when `dir` has no WAL).
absl::Status CheckWalTails(const std::string& dir);

uint32_t Crc32c(const char* data, size_t n, uint32_t crc = 0);

}  // namespace idem::engine

#endif  // IDEM_ENGINE_DB_WAL_SCAN_H_
