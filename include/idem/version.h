// idem/version.h — which idem this is, at compile time (macros) and at run time (a function), so that a
// program can log the library it runs with and refuse one it was not built for.
//
// Thread safety: constants.
#ifndef IDEM_VERSION_H_
#define IDEM_VERSION_H_

#define IDEM_VERSION_MAJOR 0
#define IDEM_VERSION_MINOR 1
#define IDEM_VERSION_PATCH 0
#define IDEM_VERSION_STRING "0.1.0"

namespace idem {

// The version of the library linked in, "MAJOR.MINOR.PATCH" (may differ from IDEM_VERSION_STRING when a
// program runs against another build of the shared library than it was compiled with).
const char* Version();

}  // namespace idem

#endif  // IDEM_VERSION_H_
