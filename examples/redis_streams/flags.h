// --name=value flags for the example programs (CLI11 would be the choice for a real tool; three small
// programs with a handful of flags each do not justify a dependency).
#ifndef IDEM_EXAMPLES_REDIS_STREAMS_FLAGS_H_
#define IDEM_EXAMPLES_REDIS_STREAMS_FLAGS_H_

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

namespace idem::example {

class Flags {
 public:
  Flags(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a.rfind("--", 0) != 0) continue;
      const size_t eq = a.find('=');
      if (eq == std::string::npos) {
        values_[a.substr(2)] = "1";
      } else {
        values_[a.substr(2, eq - 2)] = a.substr(eq + 1);
      }
    }
  }
  std::string Get(const std::string& name, const std::string& fallback = "") const {
    auto it = values_.find(name);
    return it == values_.end() ? fallback : it->second;
  }
  long Int(const std::string& name, long fallback) const {
    auto it = values_.find(name);
    return it == values_.end() ? fallback : std::atol(it->second.c_str());
  }
  double Double(const std::string& name, double fallback) const {
    auto it = values_.find(name);
    return it == values_.end() ? fallback : std::atof(it->second.c_str());
  }

 private:
  std::map<std::string, std::string> values_;
};

}  // namespace idem::example

#endif  // IDEM_EXAMPLES_REDIS_STREAMS_FLAGS_H_
