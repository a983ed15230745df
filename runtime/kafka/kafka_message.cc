// What a message says: its headers and its event.
#include <librdkafka/rdkafka.h>

#include "absl/strings/str_cat.h"
#include "idem/fingerprint.h"
#include "idem/kafka.h"

namespace idem {

std::optional<std::string_view> KafkaMessage::Header(std::string_view name) const {
  if (native == nullptr) return std::nullopt;
  rd_kafka_headers_t* headers = nullptr;
  auto* message = static_cast<rd_kafka_message_t*>(const_cast<void*>(native));
  if (rd_kafka_message_headers(message, &headers) != RD_KAFKA_RESP_ERR_NO_ERROR) return std::nullopt;
  const std::string n(name);
  const void* value = nullptr;
  size_t size = 0;
  if (rd_kafka_header_get_last(headers, n.c_str(), &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR) return std::nullopt;
  if (value == nullptr) return std::string_view();
  return std::string_view(static_cast<const char*>(value), size);
}

std::optional<Event> DefaultKafkaEventOf(const KafkaMessage& message) {
  std::optional<std::string_view> id = message.Header("idem-id");
  if (!id || id->empty()) id = message.key;
  if (id->empty()) return std::nullopt;
  return Event(*id, Fingerprint(message.value));
}

}  // namespace idem
