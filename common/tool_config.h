// The `-c FILE` handling every admin tool shares: load mta.conf the way mtad does, so that a tool
// finds the same spool, control socket and resolver, and report bad lines the same way.
#pragma once
#include <string>

#include "common/config.h"

namespace mta {

// Loads `path` into cfg. A missing file means the embedded defaults unless the path was given
// explicitly (-c): then it is an error. On failure prints "prog: file:line: key: message" for each
// error to stderr and returns false; the caller exits non-zero.
bool load_tool_config(const char* prog, const std::string& path, bool explicit_path, Config& cfg);

}  // namespace mta
