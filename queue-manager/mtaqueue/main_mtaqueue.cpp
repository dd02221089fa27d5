// mtaqueue: inspect and steer the mail queue through mtad (see man/mtaqueue.8).
#include "queue-manager/mtaqueue/admin_cli.h"

int main(int argc, char** argv) { return mta::queue::admin_tool_main("mtaqueue", "", argc, argv); }
