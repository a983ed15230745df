// The `idemctl tune` subcommand: its flags, presets and the run over every configuration.
#ifndef IDEM_TOOLS_TUNE_COMMAND_H_
#define IDEM_TOOLS_TUNE_COMMAND_H_

#include <string>
#include <vector>

#include "CLI/CLI.hpp"

namespace idem::tools {

struct TuneFlags {
  std::string preset = "short";
  std::string ttl, lease, shape;
  double rate = 0, duplicates = -1, max_seconds = 0;
  uint64_t distance = 0, events = 0;
  int threads = 0;
  std::vector<std::string> profiles, leases, sync;
  std::vector<int> bloom_bits;
  std::vector<uint64_t> block_cache, memtable;
  uint64_t fifo_cap = 0;
  std::string objective = "throughput";
  std::string out = "idem-tune";
  std::string scratch;
  bool no_plots = false;
  std::string replot;
};

CLI::App* AddTuneCommand(CLI::App& app, TuneFlags* flags);
int RunTune(const TuneFlags& flags);

}  // namespace idem::tools

#endif  // IDEM_TOOLS_TUNE_COMMAND_H_
