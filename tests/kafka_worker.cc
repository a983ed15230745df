// A ledger member as a process, for kafka_failover_test: examples/kafka/member.h's MemberMain.
#include "examples/kafka/member.h"

int main(int argc, char** argv) { return idem::ledger::MemberMain(argc, argv); }
