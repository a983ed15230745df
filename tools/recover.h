// idemctl recover: opens a store whose WAL is corrupt before its tail (Store::Open refuses it with
// kDataLoss), the only way RocksDB can: replaying the WAL up to the first damage (point-in-time
// recovery) and dropping the rest. Before that it reads the WAL files itself (engine/wal_scan.h), so
// that afterwards it can list what was dropped: the write batches past the recovered sequence, and in
// them the idem records, i.e. the events whose commits are forgotten and whose redeliveries will be
// applied again. The operator decides what to do about those (their effects were dropped with them,
// unless they live outside the DB).
#ifndef IDEM_TOOLS_RECOVER_H_
#define IDEM_TOOLS_RECOVER_H_

#include <string>

namespace idem::tools {

// Prints the report to stdout; returns the process exit code (0 recovered, 1 failed).
int Recover(const std::string& path, const std::string& column_family, bool hex_keys);

}  // namespace idem::tools

#endif  // IDEM_TOOLS_RECOVER_H_
