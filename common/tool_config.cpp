// Shared config loading for the admin tools (see tool_config.h).
#include "common/tool_config.h"

#include <cstdio>
#include <unistd.h>
#include <vector>

#include "common/version.h"

namespace mta {

bool load_tool_config(const char* prog, const std::string& path, bool explicit_path, Config& cfg) {
    std::vector<ConfigError> errors;
    if (load_config(path, !explicit_path, cfg, errors)) return true;
    for (auto& e : errors) fprintf(stderr, "%s: %s\n", prog, e.str().c_str());
    return false;
}

int parse_config_option(const char* prog, int argc, char** argv, const char* usage, ConfigOption& out,
                        bool stop_at_operand) {
    answer_info_request(prog, argc, argv, usage);
    int opt;
    while ((opt = getopt(argc, argv, stop_at_operand ? "+c:h" : "c:h")) != -1) {
        if (opt != 'c') return usage_error(usage);
        out.path = optarg;
        out.explicit_path = true;
    }
    return -1;
}

}  // namespace mta
