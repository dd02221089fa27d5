// Shared front end of the mtaqueue and mailq tools: find mtad's control socket through -c FILE, send
// "queue <args>" and print the answer. The queue does all the work (and all the permission checks).
#pragma once

namespace mta::queue {

// `prefix` is put before the user's arguments ("" for mtaqueue, "list" for mailq).
int admin_tool_main(const char* prog, const char* prefix, int argc, char** argv);

}  // namespace mta::queue
