#include "util/printable.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace idem::util {

std::string Printable(std::string_view bytes, size_t shown) {
  std::string out;
  for (char c : bytes.substr(0, shown)) {
    if (c == '\\') {
      out.append("\\\\");  // escaped too, so that no two different IDs print alike
    } else if (c >= 0x20 && c < 0x7f) {
      out.push_back(c);
    } else {
      absl::StrAppendFormat(&out, "\\x%02x", static_cast<unsigned char>(c));
    }
  }
  if (bytes.size() > shown) absl::StrAppend(&out, "...");
  return out;
}

std::string PrintableAll(std::string_view bytes, bool hex) {
  if (hex) return absl::BytesToHexString(absl::string_view(bytes.data(), bytes.size()));
  return Printable(bytes, std::numeric_limits<size_t>::max());
}

std::string JsonBytes(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (char c : bytes) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (u >= 0x20 && u < 0x7f) {
      out.push_back(c);
    } else {
      out += "\\u00";
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 15]);
    }
  }
  out.push_back('"');
  return out;
}

}  // namespace idem::util
