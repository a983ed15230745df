// A full disk on real small file systems: an ext4 loop mount and a tmpfs, each filled up and freed 20
// times under a running consumer. The consumer must pause (the store refuses writes below its free-space
// reserve, or RocksDB reports the error) and resume by itself, never abort, and lose or double no
// acknowledged event. Needs root (mount); skipped with a message otherwise.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "idem/store.h"
#include "rocksdb/db.h"
#include "tests/support/child_process.h"
#include "tests/support/test_util.h"

namespace idem {
namespace {

using ::idem::testing::IsOk;
using ::idem::testing::ManualOptions;
using ::idem::testing::ScratchDir;

constexpr int kCycles = 20;

// Writes a file until the file system refuses, leaving no free byte; returns the bytes written.
uint64_t Fill(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd < 0) return 0;
  uint64_t written = 0;
  std::string chunk(1 << 20, 'f');
  for (size_t size : {size_t{1} << 20, size_t{4096}, size_t{512}}) {
    for (;;) {
      const ssize_t n = ::write(fd, chunk.data(), size);
      if (n <= 0) break;
      written += static_cast<uint64_t>(n);
    }
  }
  ::fsync(fd);
  ::close(fd);
  return written;
}

class DiskFullTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a small file system (CI runs as root)";
    mount_ = dir_.Sub("mnt");
    std::filesystem::create_directories(mount_);
    if (GetParam() == "ext4") {
      const std::string image = dir_.Sub("fs.img");
      const std::string cmd = "truncate -s 64M " + image + " && mkfs.ext4 -q -F " + image +
                              " >/dev/null 2>&1 && mount -o loop " + image + " " + mount_;
      if (std::system(cmd.c_str()) != 0) GTEST_SKIP() << "cannot make and loop-mount an ext4 image here";
    } else if (::mount("idem-disk-full", mount_.c_str(), "tmpfs", 0, "size=64m") != 0) {
      GTEST_SKIP() << "cannot mount a tmpfs here: " << std::strerror(errno);
    }
    mounted_ = true;
  }
  void TearDown() override {
    if (mounted_) ::umount2(mount_.c_str(), MNT_DETACH);
  }

  ScratchDir dir_;
  std::string mount_;
  bool mounted_ = false;
};

TEST_P(DiskFullTest, FillAndFreeTwentyTimesPausesResumesAndLosesNothing) {
  const std::string db = mount_ + "/db";
  const std::string filler = mount_ + "/filler";
  testing::Child worker({IDEM_DISK_FULL_WORKER, db, "1000000", std::to_string(8 << 20), std::to_string(1 << 20)});
  ASSERT_TRUE(worker.running());
  ASSERT_TRUE(worker.ReadUntilOutput("A evt-100\n", absl::Seconds(30))) << worker.output();
  int pauses = 0, resumes = 0;
  auto count = [&](const char* line) {
    int n = 0;
    for (size_t at = worker.output().find(line); at != std::string::npos; at = worker.output().find(line, at + 1)) ++n;
    return n;
  };
  for (int cycle = 0; cycle < kCycles; ++cycle) {
    const uint64_t filled = Fill(filler);
    EXPECT_GT(filled, 0u) << "cycle " << cycle;
    // The consumer pauses: the store refuses writes on a full disk.
    bool alive = true;
    testing::WaitFor(
        [&] {
          alive = alive && worker.ReadFor(absl::Milliseconds(10));
          return !alive || count("P\n") > pauses;
        },
        absl::Seconds(20));
    ASSERT_TRUE(alive) << "the worker died on a full disk, cycle " << cycle << "\n" << worker.output().substr(0, 500);
    ASSERT_GT(count("P\n"), pauses) << "no pause on a full disk, cycle " << cycle;
    pauses = count("P\n");
    worker.ReadUntil(absl::Now() + absl::Milliseconds(300));  // it stays full a while
    std::filesystem::remove(filler);
    // ... and resumes by itself when space returns.
    testing::WaitFor(
        [&] {
          alive = alive && worker.ReadFor(absl::Milliseconds(10));
          return !alive || count("R\n") > resumes;
        },
        absl::Seconds(30));
    ASSERT_TRUE(alive) << "the worker died, cycle " << cycle;
    ASSERT_GT(count("R\n"), resumes) << "no resume after space returned, cycle " << cycle;
    resumes = count("R\n");
    worker.ReadUntil(absl::Now() + absl::Milliseconds(200));  // work goes on
  }
  // The worker never aborted: it is still running, and dies only by our SIGKILL now.
  const int status = worker.Kill();
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "worker ended on its own: status " << status;

  std::set<std::string> acknowledged;
  std::istringstream lines(worker.output());
  std::string kind, id;
  while (lines >> kind) {
    if (kind == "A" && lines >> id) acknowledged.insert(id);
  }
  Options options = ManualOptions();
  options.min_free_disk_bytes = 0;
  options.create_if_missing = false;
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, db));
  size_t lost = 0, doubled = 0;
  for (const std::string& acked : acknowledged) {
    absl::StatusOr<RecordInfo> info = store->Peek(acked);
    if (!info.ok() || info->state != RecordInfo::State::kDone) ++lost;
    std::unique_ptr<rocksdb::Iterator> it(store->db()->NewIterator(rocksdb::ReadOptions()));
    const std::string prefix = "ledger/" + acked + "/";
    int keys = 0;
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) ++keys;
    if (keys != 1) ++doubled;
  }
  EXPECT_EQ(lost, 0u);
  EXPECT_EQ(doubled, 0u);
  EXPECT_GE(pauses, kCycles);
  std::printf(
      "[ figures  ] %s: %d fill/free cycles, %d pauses, %d resumes, 0 aborts, %zu acknowledged events, "
      "%zu lost, %zu applied twice\n",
      GetParam().c_str(), kCycles, pauses, resumes, acknowledged.size(), lost, doubled);
}

// RocksDB preallocates each WAL at 1.1 x the largest write buffer of any column family; the default
// column family used to keep RocksDB's 64 MiB whatever the store's write_buffer_size said, so every WAL
// reserved ~70 MiB of a small disk.
TEST_P(DiskFullTest, WalPreallocationIsBoundedByTheStoresWriteBuffer) {
  Options options = ManualOptions();
  options.write_buffer_size = 1 << 20;
  options.min_free_disk_bytes = 0;
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options, mount_ + "/db"));
  IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store->Reserve("evt"));
  ASSERT_THAT(store->Commit("evt", r.token, "ok"), IsOk());
  uint64_t allocated = 0;
  for (const auto& e : std::filesystem::directory_iterator(mount_ + "/db")) {
    if (e.path().extension() != ".log") continue;
    struct stat st;
    ASSERT_EQ(::stat(e.path().c_str(), &st), 0);
    allocated = std::max<uint64_t>(allocated, static_cast<uint64_t>(st.st_blocks) * 512);
  }
  EXPECT_GT(allocated, 0u);
  EXPECT_LE(allocated, uint64_t{2} << 20) << "a WAL preallocated " << (allocated >> 20) << " MiB";
}

INSTANTIATE_TEST_SUITE_P(FileSystems, DiskFullTest, ::testing::Values("ext4", "tmpfs"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace idem
