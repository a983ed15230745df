// A driver for the fuzz targets when the compiler has no libFuzzer (GCC builds): runs every file of the
// corpus directories given, then -runs=N random inputs (default 1000) of up to 600 bytes, seeded by
// -seed=S. Unguided, but it keeps the targets compiled and their properties exercised in every build;
// coverage-guided fuzzing runs in the clang build (scripts/test; docs/RELIABILITY.md, "Fuzzing").
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

void RunFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

}  // namespace

int main(int argc, char** argv) {
  long runs = 1000;
  unsigned long seed = 1;
  size_t files = 0;
  for (int a = 1; a < argc; ++a) {
    const std::string arg = argv[a];
    if (arg.rfind("-runs=", 0) == 0) {
      runs = std::atol(arg.c_str() + 6);
    } else if (arg.rfind("-seed=", 0) == 0) {
      seed = std::strtoul(arg.c_str() + 6, nullptr, 10);
    } else if (std::filesystem::is_directory(arg)) {
      for (const auto& entry : std::filesystem::directory_iterator(arg)) {
        RunFile(entry.path());
        ++files;
      }
    } else {
      RunFile(arg);
      ++files;
    }
  }
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> input;
  for (long r = 0; r < runs; ++r) {
    input.resize(rng() % 600);
    for (auto& b : input) b = static_cast<uint8_t>(rng());
    LLVMFuzzerTestOneInput(input.data(), input.size());
  }
  std::printf("%zu corpus files and %ld random inputs ran without a failure\n", files, runs);
  return 0;
}
