// mtaconf: show the effective configuration. `mtaconf [-c FILE] [-d | -n | -k] [key ...]`
//   (no flag) every key with its effective value; -d built-in defaults; -n only keys that differ from
//   the defaults; -k keys with a one-line description. Exits 1 naming file:line:key on a bad file.
#include <cstdio>
#include <cstring>
#include <string>
#include <unistd.h>

#include "common/tool_config.h"
#include "common/version.h"

namespace {

const char* const kUsage =
    "usage: mtaconf [-c config_file] [-d | -n | -k] [key ...]\n"
    "  (no flag)  every key with its effective value\n"
    "  -d         built-in defaults\n"
    "  -n         only the keys that differ from the defaults\n"
    "  -k         keys with a one-line description\n";

}  // namespace

int main(int argc, char** argv) {
    mta::answer_info_request("mtaconf", argc, argv, kUsage);
    std::string path = mta::kDefaultConfigPath;
    bool explicit_path = false;
    char mode = 'a';
    int opt;
    while ((opt = getopt(argc, argv, "c:dnkh")) != -1) {
        switch (opt) {
        case 'c': path = optarg; explicit_path = true; break;
        case 'd': case 'n': case 'k': mode = char(opt); break;
        default: return mta::usage_error(kUsage);
        }
    }
    mta::Config cfg, defaults;
    if (!mta::load_tool_config("mtaconf", path, explicit_path, cfg)) return 1;
    for (auto& w : cfg.warnings) fprintf(stderr, "mtaconf: warning: %s\n", w.c_str());
    std::vector<mta::ConfigError> errors;
    if (!mta::parse_config("", "(defaults)", defaults, errors)) {  // built-in defaults: cannot fail
        for (auto& e : errors) fprintf(stderr, "mtaconf: %s\n", e.str().c_str());
        return 1;
    }
    int status = 0;
    auto wanted = [&](const char* key) {
        if (optind == argc) return true;
        for (int i = optind; i < argc; i++)
            if (strcmp(argv[i], key) == 0) return true;
        return false;
    };
    for (int i = optind; i < argc; i++) {
        bool known = false;
        for (auto& k : mta::config_keys()) known = known || strcmp(k.name, argv[i]) == 0;
        if (!known) { fprintf(stderr, "mtaconf: unknown key %s\n", argv[i]); status = 1; }
    }
    for (auto& k : mta::config_keys()) {
        if (!wanted(k.name)) continue;
        std::string v = mta::config_value_text(cfg, k.name), d = mta::config_value_text(defaults, k.name);
        if (mode == 'd') printf("%s = %s\n", k.name, d.c_str());
        else if (mode == 'k') printf("%-30s %s\n", k.name, k.help);
        else if (mode == 'n') { if (v != d) printf("%s = %s\n", k.name, v.c_str()); }
        else printf("%s = %s\n", k.name, v.c_str());
    }
    return status;
}
