// A FileSystem wrapper for the DBs that Store::Open owns: write errors on WAL and MANIFEST files are
// reported as not retryable, and the info LOG never fails.
//
// Why: RocksDB marks ENOSPC from the file system retryable. A retryable WAL error lets RocksDB keep
// writing through the WAL writer that failed, and Debian's assertion-enabled build then aborts the
// process (WritableFileWriter::AssertFalseAndGetStatusForPrevError: 'sync_without_flush_called_'), on a
// real full ext4 disk every time. Not retryable, the same error stops writes (a hard or fatal
// background error): calls fail with kUnavailable, the consumer pauses, and Store::Resume recovers,
// closing and reopening the DB when RocksDB cannot resume in place. SST write errors keep their
// retryable mark: RocksDB recovers from those by itself without reusing the failed writer.
//
// The info LOG is the other writer RocksDB reuses after a failure (it logs each error it handles, so a
// full disk fails one line and the next aborts): it is written by a logger of our own that drops what
// it cannot write, as lost diagnostics.
//
// Thread safety: as the wrapped FileSystem.
#ifndef IDEM_ENGINE_DB_WAL_ERROR_FS_H_
#define IDEM_ENGINE_DB_WAL_ERROR_FS_H_

#include "rocksdb/env.h"

namespace idem::engine {

// The default Env with that file system; lives for the whole process, like Env::Default().
rocksdb::Env* DefaultEnvWithoutRetryableWalErrors();

}  // namespace idem::engine

#endif  // IDEM_ENGINE_DB_WAL_ERROR_FS_H_
