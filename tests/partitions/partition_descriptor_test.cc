// A partition set under a hard descriptor limit it cannot raise: Activate refuses the partition that
// would take the set's open files past its budget, with kResourceExhausted and what to do, and the set
// closes and reopens under the same limit with every partition it held. A binary of its own: the hard
// limit, once lowered, cannot be raised again by an unprivileged process.
#include <sys/resource.h>

#include <string>

#include "idem/partition_set.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"
#include "tests/support/test_util.h"

namespace idem {
namespace {

using ::idem::testing::IsOk;
using ::idem::testing::ScratchDir;
using ::idem::testing::StatusIs;

TEST(PartitionDescriptorTest, ActivateRefusesPastTheBudgetAndTheSetAlwaysReopens) {
  rlimit limit{256, 256};
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &limit), 0);
  ScratchDir dir;
  PartitionSetOptions options;
  options.block_cache_bytes = 8 << 20;
  options.write_buffer_budget_bytes = 32 << 20;
  options.maintenance_interval = absl::ZeroDuration();
  int activated = 0;
  {
    IDEM_ASSERT_OK_AND_ASSIGN(auto set, PartitionSet::Open(options, dir.Sub("set")));
    absl::Status refused;
    for (int i = 0; i < 200 && refused.ok(); ++i) {
      absl::StatusOr<Partition*> p = set->Activate(PartitionLayout{"p/" + std::to_string(i), {"e"}}, {});
      if (!p.ok()) {
        refused = p.status();
        break;
      }
      ++activated;
      IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, (*p)->store().Reserve("evt"));
      rocksdb::WriteBatch effects;
      effects.Put((*p)->family(1), "k", "v");
      ASSERT_THAT((*p)->store().Commit("evt", r.token, "", &effects), IsOk());
      ASSERT_TRUE(set->db()->Flush(rocksdb::FlushOptions(), (*p)->family(0)).ok());
      ASSERT_TRUE(set->db()->Flush(rocksdb::FlushOptions(), (*p)->family(1)).ok());
    }
    EXPECT_THAT(refused, StatusIs(absl::StatusCode::kResourceExhausted));
    EXPECT_THAT(std::string(refused.message()), ::testing::HasSubstr("descriptor"));
    EXPECT_GT(activated, 20);
    for (int i = 0; i < activated; ++i) {
      ASSERT_THAT(set->Deactivate("p/" + std::to_string(i), KeepLocalCopy::kKeep), IsOk());
    }
    ASSERT_THAT(set->Close(), IsOk());
  }
  IDEM_ASSERT_OK_AND_ASSIGN(auto set, PartitionSet::Open(options, dir.Sub("set")));
  ASSERT_EQ(set->LocalCopies().size(), static_cast<size_t>(activated));
  ActivateOptions again;
  again.use_local_copy = true;
  IDEM_ASSERT_OK_AND_ASSIGN(Partition * p, set->Activate(PartitionLayout{"p/0", {"e"}}, again));
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, p->store().Reserve("evt"));
  EXPECT_EQ(r.verdict, Verdict::kDuplicate);
}

}  // namespace
}  // namespace idem
