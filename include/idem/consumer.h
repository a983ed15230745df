// idem/consumer.h — the former name of idem/processor.h (the Processor and its outcomes), kept so
// that code written against it still builds. New code includes idem/processor.h.
#ifndef IDEM_CONSUMER_H_
#define IDEM_CONSUMER_H_

#include "idem/processor.h"

#endif  // IDEM_CONSUMER_H_
