// A ledger member as a process, for kafka_failover_test: testing/kafka_member.h's MemberMain.
#include "testing/kafka_member.h"

int main(int argc, char** argv) { return idem::ledger::MemberMain(argc, argv); }
