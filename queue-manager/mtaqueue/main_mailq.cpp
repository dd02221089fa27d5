// mailq: the queue listing (`mtaqueue list`), sendmail-style name (see man/mailq.1).
#include "queue-manager/mtaqueue/admin_cli.h"

int main(int argc, char** argv) { return mta::queue::admin_tool_main("mailq", "list", argc, argv); }
