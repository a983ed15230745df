// A consumer process holding one active partition, for partition_set_test: it opens the set at
// <path>, activates "orders/1", commits one event with a ledger effect, prints "ready" and waits to be
// killed (SIGKILL), so the partition is active when the process dies.
// Usage: partition_worker <set-path>
#include <unistd.h>

#include <cstdio>

#include "idem/partition_set.h"
#include "rocksdb/write_batch.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s <set-path>\n", argv[0]);
    return 2;
  }
  auto set = idem::PartitionSet::Open(idem::PartitionSetOptions(), argv[1]);
  if (!set.ok()) {
    std::fprintf(stderr, "open: %s\n", set.status().ToString().c_str());
    return 1;
  }
  auto p = (*set)->Activate(idem::PartitionLayout{"orders/1", {"ledger"}}, idem::ActivateOptions{});
  if (!p.ok()) {
    std::fprintf(stderr, "activate: %s\n", p.status().ToString().c_str());
    return 1;
  }
  auto r = (*p)->store().Reserve("evt");
  if (!r.ok()) return 1;
  rocksdb::WriteBatch effects;
  effects.Put((*p)->family(1), "last", "evt");
  if (!(*p)->store().Commit("evt", r->token, "", &effects).ok()) return 1;
  std::printf("ready\n");
  std::fflush(stdout);
  for (;;) pause();
}
