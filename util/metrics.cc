#include "util/metrics.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "util/printable.h"

namespace idem::util {

namespace {

const char* TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter: return "counter";
    case MetricType::kGauge: return "gauge";
    case MetricType::kSummary: return "summary";
  }
  return "untyped";
}

std::string JsonString(std::string_view s) { return JsonBytes(s); }

// k="v",k2="v2" (values escaped as LabelValue does) as a JSON object.
std::string LabelsAsJson(std::string_view labels) {
  std::string out = "{";
  size_t i = 0;
  bool first = true;
  while (i < labels.size()) {
    const size_t eq = labels.find('=', i);
    if (eq == std::string_view::npos || eq + 1 >= labels.size() || labels[eq + 1] != '"') break;
    std::string value;
    size_t j = eq + 2;
    for (; j < labels.size() && labels[j] != '"'; ++j) {
      if (labels[j] == '\\' && j + 1 < labels.size()) {
        ++j;
        value.push_back(labels[j] == 'n' ? '\n' : labels[j]);
      } else {
        value.push_back(labels[j]);
      }
    }
    absl::StrAppend(&out, first ? "" : ",", JsonString(labels.substr(i, eq - i)), ":", JsonString(value));
    first = false;
    i = j + 1;
    if (i < labels.size() && labels[i] == ',') ++i;
  }
  return out + "}";
}

}  // namespace

std::string LabelValue(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

void Metrics::AddFormatted(std::string_view name, std::string_view help, MetricType type, std::string_view labels,
                           std::string value, std::string_view suffix) {
  Family* family = nullptr;
  for (Family& f : families_) {
    if (f.name == name) family = &f;
  }
  if (family == nullptr) {
    families_.push_back(Family{std::string(name), std::string(help), type, {}});
    family = &families_.back();
  }
  family->samples.push_back(Sample{std::string(suffix), std::string(labels), std::move(value)});
}

void Metrics::Add(std::string_view name, std::string_view help, MetricType type, std::string_view labels,
                  uint64_t value, std::string_view suffix) {
  AddFormatted(name, help, type, labels, absl::StrCat(value), suffix);
}

void Metrics::Add(std::string_view name, std::string_view help, MetricType type, std::string_view labels, double value,
                  std::string_view suffix) {
  AddFormatted(name, help, type, labels, absl::StrFormat("%.9g", value), suffix);
}

std::string Metrics::Prometheus() const {
  std::string out;
  for (const Family& f : families_) {
    absl::StrAppend(&out, "# HELP ", f.name, " ", f.help, "\n# TYPE ", f.name, " ", TypeName(f.type), "\n");
    for (const Sample& s : f.samples) {
      absl::StrAppend(&out, f.name, s.suffix, s.labels.empty() ? "" : absl::StrCat("{", s.labels, "}"), " ", s.value,
                      "\n");
    }
  }
  return out;
}

std::string Metrics::Json() const {
  std::string out = "{";
  for (size_t i = 0; i < families_.size(); ++i) {
    const Family& f = families_[i];
    absl::StrAppend(&out, i ? "," : "", JsonString(f.name), ":");
    if (f.samples.size() == 1 && f.samples[0].labels.empty() && f.samples[0].suffix.empty()) {
      out += f.samples[0].value;
      continue;
    }
    out += "[";
    for (size_t k = 0; k < f.samples.size(); ++k) {
      const Sample& s = f.samples[k];
      absl::StrAppend(&out, k ? "," : "", "{\"labels\":", LabelsAsJson(s.labels), ",",
                      JsonString(s.suffix.empty() ? "value" : s.suffix.substr(1)), ":", s.value, "}");
    }
    out += "]";
  }
  return out + "}";
}

}  // namespace idem::util
