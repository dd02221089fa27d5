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

// The options of a tool whose only option is `-c FILE` (mtactl, mtadns, newaliases, mtaqueue, mailq):
// answers --version and --help, reads -c and leaves optind at the first operand. With stop_at_operand,
// options after the first operand are left to the operands (mtaqueue passes them on to the queue).
// Returns -1 to go on, or the exit status of a usage error it has printed.
struct ConfigOption {
    std::string path = kDefaultConfigPath;
    bool explicit_path = false;
};
int parse_config_option(const char* prog, int argc, char** argv, const char* usage, ConfigOption& out,
                        bool stop_at_operand = false);

}  // namespace mta
