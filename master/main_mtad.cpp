// mtad: the master daemon. `mtad [-c FILE] [-d] [-n]`.
#include <cstdio>
#include <cstring>
#include <string_view>
#include <fcntl.h>
#include <unistd.h>

#include "common/tool_config.h"
#include "common/log.h"
#include "common/role_name.h"
#include "common/version.h"
#include "master/listener_checks.h"
#include "master/master.h"

namespace {

const char* const kUsage =
    "usage: mtad [-c config_file] [-d] [-n]\n"
    "  -c FILE  configuration file (default /etc/mta/mta.conf; built-in defaults when it does not exist)\n"
    "  -d       stay in the foreground and log to stderr\n"
    "  -n       check the configuration and exit\n";
static_assert(std::string_view(mta::kDefaultConfigPath) == "/etc/mta/mta.conf", "kUsage names the default path");

}  // namespace

int main(int argc, char** argv) {
    const char* self = mta::role_program(mta::Role::master);
    mta::answer_info_request(self, argc, argv, kUsage);
    std::string path = mta::kDefaultConfigPath;
    bool explicit_path = false, foreground = false, check_only = false;
    int opt;
    while ((opt = getopt(argc, argv, "c:dnh")) != -1) {
        switch (opt) {
        case 'c': path = optarg; explicit_path = true; break;
        case 'd': foreground = true; break;
        case 'n': check_only = true; break;
        default: return mta::usage_error(kUsage);
        }
    }
    if (optind != argc) return mta::usage_error(kUsage);
    mta::Config cfg;
    // Only the implicit default path may be absent: a named file that is missing is a mistake.
    if (!mta::load_tool_config(self, path, explicit_path, cfg)) return 1;
    mta::absolutize_paths(cfg);
    // Before daemonizing: these reach the terminal (or the service manager's journal) either way.
    auto problems = mta::master::check_listeners(cfg);
    mta::master::check_dkim_keys(cfg, problems.errors);
    for (auto& e : problems.errors) fprintf(stderr, "mtad: %s\n", e.str().c_str());
    if (!problems.errors.empty()) return 1;
    if (check_only) {
        for (auto& w : cfg.warnings) fprintf(stderr, "mtad: warning: %s\n", w.c_str());
        for (auto& w : problems.warnings) fprintf(stderr, "mtad: warning: %s\n", w.str().c_str());
        printf("mtad: configuration %s is valid\n", cfg.source.c_str());
        return 0;
    }
    // maillog_file: lines go to stderr, which mtad points at the file once it has detached.
    mta::log::init(self, foreground || !cfg.maillog_file.empty());
    mta::log::configure(cfg.log_level, cfg.log_format);
    for (auto& w : cfg.warnings) LOG_WARN("event=config_warning detail=\"%s\"", mta::log::safe(w).c_str());
    for (auto& w : problems.warnings) LOG_WARN("event=config_warning detail=\"%s\"", mta::log::safe(w.str()).c_str());
    mta::master::Master m(path, explicit_path, std::move(cfg), foreground);
    return m.run();
}
