#include "idem/version.h"

namespace idem {

const char* Version() { return IDEM_VERSION_STRING; }

}  // namespace idem
