// Shared config loading for the admin tools (see tool_config.h).
#include "common/tool_config.h"

#include <cstdio>
#include <vector>

namespace mta {

bool load_tool_config(const char* prog, const std::string& path, bool explicit_path, Config& cfg) {
    std::vector<ConfigError> errors;
    if (load_config(path, !explicit_path, cfg, errors)) return true;
    for (auto& e : errors) fprintf(stderr, "%s: %s\n", prog, e.str().c_str());
    return false;
}

}  // namespace mta
