#include "engine/db/wal_scan.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace idem::engine {
namespace {

constexpr size_t kBlock = 32768;
constexpr size_t kHeader = 7;
enum : uint8_t { kZero = 0, kFull = 1, kFirst = 2, kMiddle = 3, kLast = 4 };

std::array<uint32_t, 256> MakeTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
    table[i] = c;
  }
  return table;
}

uint32_t Fixed32(const char* p) {
  return static_cast<uint32_t>(static_cast<uint8_t>(p[0])) | static_cast<uint32_t>(static_cast<uint8_t>(p[1])) << 8 |
         static_cast<uint32_t>(static_cast<uint8_t>(p[2])) << 16 |
         static_cast<uint32_t>(static_cast<uint8_t>(p[3])) << 24;
}

uint32_t Unmask(uint32_t masked) {
  const uint32_t rot = masked - 0xa282ead8u;
  return (rot >> 17) | (rot << 15);
}

// Whether a well-formed record (known type, fits its block, CRC checks) starts at `pos`.
bool WellFormedAt(const std::string& data, size_t pos, size_t* length, uint8_t* type) {
  const size_t block_end = std::min(data.size(), (pos / kBlock + 1) * kBlock);
  if (pos + kHeader > block_end) return false;
  const size_t n = static_cast<uint8_t>(data[pos + 4]) | static_cast<size_t>(static_cast<uint8_t>(data[pos + 5])) << 8;
  const uint8_t t = static_cast<uint8_t>(data[pos + 6]);
  if (t < kFull || t > kLast || pos + kHeader + n > block_end) return false;
  const uint32_t crc = Crc32c(data.data() + pos + kHeader, n, Crc32c(data.data() + pos + 6, 1));
  if (crc != Unmask(Fixed32(data.data() + pos))) return false;
  *length = n;
  *type = t;
  return true;
}

}  // namespace

uint32_t Crc32c(const char* data, size_t n, uint32_t crc) {
  static const std::array<uint32_t, 256> table = MakeTable();
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ static_cast<uint8_t>(data[i])) & 0xff] ^ (crc >> 8);
  return ~crc;
}

absl::StatusOr<WalScan> ScanWal(const std::string& file, uint64_t from) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return absl::UnavailableError(absl::StrCat("cannot read WAL file '", file, "'"));
  // Only from `from` on (Open checks just the last block of a WAL that may be tens of MiB). `from` is a
  // block boundary, so positions in `data` keep the file's block alignment; offsets add `from` back.
  in.seekg(static_cast<std::streamoff>(from));
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  WalScan scan;
  scan.file = file;
  std::string assembling;
  uint64_t assembling_at = 0;
  bool in_fragments = false;
  auto finish = [&](uint64_t at, std::string rep) {
    if (rep.size() < 12) return;
    WalBatch batch;
    batch.offset = from + at;
    for (int i = 7; i >= 0; --i) batch.sequence = (batch.sequence << 8) | static_cast<uint8_t>(rep[i]);
    batch.count = Fixed32(rep.data() + 8);
    batch.rep = std::move(rep);
    scan.batches.push_back(std::move(batch));
  };
  size_t pos = 0;
  while (pos < data.size()) {
    const size_t block_end = std::min(data.size(), (pos / kBlock + 1) * kBlock);
    if (pos + kHeader > block_end) {  // a block's trailer
      pos = block_end;
      continue;
    }
    size_t length = 0;
    uint8_t type = 0;
    if (WellFormedAt(data, pos, &length, &type)) {
      const std::string payload = data.substr(pos + kHeader, length);
      if (scan.damage_offset) scan.well_formed_after_damage = true;
      switch (type) {
        case kFull:
          finish(pos, payload);
          in_fragments = false;
          break;
        case kFirst:
          assembling = payload;
          assembling_at = pos;
          in_fragments = true;
          break;
        case kMiddle:
          if (in_fragments) assembling += payload;
          break;
        case kLast:
          if (in_fragments) finish(assembling_at, assembling + payload);
          in_fragments = false;
          break;
      }
      pos += kHeader + length;
      continue;
    }
    // Zeros: padding, or the preallocated, never-written rest of the file.
    if (std::all_of(data.begin() + static_cast<long>(pos), data.begin() + static_cast<long>(block_end),
                    [](char c) { return c == 0; })) {
      pos = block_end;
      continue;
    }
    if (!scan.damage_offset) scan.damage_offset = from + pos;
    in_fragments = false;
    ++pos;  // resynchronize: the next well-formed record may start anywhere after the damage
  }
  return scan;
}

std::vector<std::string> WalFiles(const std::string& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".log") files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());  // zero-padded numbers: name order is age order
  return files;
}

absl::Status CheckWalTails(const std::string& dir) {
  for (const std::string& file : WalFiles(dir)) {
    std::error_code ec;
    const uintmax_t size = std::filesystem::file_size(file, ec);
    if (ec || size == 0) continue;
    absl::StatusOr<WalScan> scan = ScanWal(file, (size - 1) / kBlock * kBlock);
    if (!scan.ok()) return scan.status();
    if (scan->damage_offset && scan->well_formed_after_damage) {
      return absl::DataLossError(absl::StrCat(
          "WAL file '", file, "' is corrupt at offset ", *scan->damage_offset,
          " with well-formed records after it (not a torn tail): opening would forget acknowledged writes"));
    }
  }
  return absl::OkStatus();
}

}  // namespace idem::engine
