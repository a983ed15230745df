// Command-line parsing for the example programs and the test members, with CLI11 (the project's parser, as in idemctl):
// an unknown or malformed flag is a usage error (exit 2, the message on stderr), never silently ignored. Flags are
// written --name=value or --name value.
#ifndef IDEM_TESTING_FLAGS_H_
#define IDEM_TESTING_FLAGS_H_

#include <cstdio>

#include "CLI/CLI.hpp"

namespace idem::flags {

// -1 when the program goes on; otherwise the exit code (0 after --help, 2 for a usage error).
inline int Parse(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::printf("%s", app.help().c_str());
    return 0;
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "%s: %s\n%s", app.get_name().c_str(), e.what(), app.help().c_str());
    return 2;
  }
  return -1;
}

}  // namespace idem::flags

#endif  // IDEM_TESTING_FLAGS_H_
