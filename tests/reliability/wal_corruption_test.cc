// A bit flipped inside the WAL must not make acknowledged commits read as new: Open refuses with
// kDataLoss. A torn tail (the last record cut short, as a crash leaves it) is still opened quietly.
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "idem/store.h"
#include "tests/support/test_util.h"

namespace idem {
namespace {

using ::idem::testing::IsOk;
using ::idem::testing::ManualOptions;
using ::idem::testing::ScratchDir;
using ::idem::testing::StatusIs;

constexpr int kCommits = 200;

Options Quiet() {
  Options options = ManualOptions();
  options.min_free_disk_bytes = 0;
  return options;
}

// A store with `commits` acknowledged commits still only in the WAL, copied while open: the copy is
// what a crash leaves behind.
std::string CrashImage(const ScratchDir& dir, const std::string& name, int commits = kCommits) {
  const std::string live = dir.Sub(name + "-live");
  const std::string image = dir.Sub(name);
  auto store = Store::Open(Quiet(), live);
  EXPECT_THAT(store, IsOk());
  for (int i = 0; i < commits; ++i) {
    const std::string id = "evt-" + std::to_string(i);
    absl::StatusOr<Reservation> r = (*store)->Reserve(id);
    EXPECT_THAT((*store)->Commit(id, r->token, std::string(40, 'r')), IsOk());
  }
  std::filesystem::copy(live, image);
  std::filesystem::remove(image + "/LOCK");
  return image;
}

std::string LargestWal(const std::string& dir) {
  std::string best;
  uintmax_t size = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() == ".log" && e.file_size() > size) {
      size = e.file_size();
      best = e.path().string();
    }
  }
  return best;
}

TEST(WalCorruptionTest, FlipInTheMiddleIsDataLossNotSilentForgetting) {
  ScratchDir dir;
  int refused = 0;
  for (int flip = 0; flip < 18; ++flip) {
    const std::string image = CrashImage(dir, "flip-" + std::to_string(flip));
    const std::string wal = LargestWal(image);
    ASSERT_FALSE(wal.empty());
    const uintmax_t size = std::filesystem::file_size(wal);
    {
      std::fstream f(wal, std::ios::in | std::ios::out | std::ios::binary);
      const std::streamoff at = static_cast<std::streamoff>(size * (flip + 1) / 20);  // 5 % .. 90 % into the file
      f.seekg(at);
      char c = 0;
      f.read(&c, 1);
      c = static_cast<char>(c ^ (1 << (flip % 8)));
      f.seekp(at);
      f.write(&c, 1);
    }
    absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(Quiet(), image);
    if (!store.ok()) {
      EXPECT_THAT(store, StatusIs(absl::StatusCode::kDataLoss)) << flip;
      EXPECT_THAT(std::string(store.status().message()), ::testing::HasSubstr("idemctl recover")) << flip;
      ++refused;
      continue;
    }
    // Opened: then every acknowledged commit must still be there.
    for (int i = 0; i < kCommits; ++i) {
      IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, (*store)->Reserve("evt-" + std::to_string(i)));
      EXPECT_EQ(r.verdict, Verdict::kDuplicate) << "flip " << flip << " silently forgot evt-" << i;
    }
  }
  std::printf("[ figures  ] 18 bit flips inside the WAL: %d refused with kDataLoss, %d opened with nothing lost\n",
              refused, 18 - refused);
}

// A WAL of several 32 KiB blocks: the damaged length in its last block is found although only that
// block is read before the open.
TEST(WalCorruptionTest, FlipInTheLastBlockOfALongWalIsDataLoss) {
  ScratchDir dir;
  const std::string image = CrashImage(dir, "long", 2000);
  const std::string wal = LargestWal(image);
  const uintmax_t size = std::filesystem::file_size(wal);
  ASSERT_GT(size, 3u * 32768) << "the WAL must span several blocks";
  // A record header's length field sits 4 bytes into the record; find the first record of the last
  // block (the block starts with one) and break its length so that it runs past the data.
  const std::streamoff last_block = static_cast<std::streamoff>((size - 1) / 32768 * 32768);
  {
    std::fstream f(wal, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(last_block + 5);
    const char big = '\x7f';
    f.write(&big, 1);
  }
  EXPECT_THAT(Store::Open(Quiet(), image), StatusIs(absl::StatusCode::kDataLoss));
}

TEST(WalCorruptionTest, TornTailIsOpenedQuietly) {
  ScratchDir dir;
  const std::string image = CrashImage(dir, "torn");
  const std::string wal = LargestWal(image);
  // The WAL is preallocated: cut inside the last record written, not in the zeroed tail.
  std::string bytes;
  {
    std::ifstream f(wal, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), {});
  }
  size_t end = bytes.find_last_not_of('\0');
  ASSERT_NE(end, std::string::npos);
  std::filesystem::resize_file(wal, end - 10);
  IDEM_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(Quiet(), image));
  int present = 0;
  for (int i = 0; i < kCommits; ++i) {
    IDEM_ASSERT_OK_AND_ASSIGN(Reservation r, store->Reserve("evt-" + std::to_string(i)));
    if (r.verdict == Verdict::kDuplicate) ++present;
  }
  EXPECT_GE(present, kCommits - 1) << "more than the torn last commit went missing";
}

}  // namespace
}  // namespace idem
