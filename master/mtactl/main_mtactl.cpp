// mtactl: talk to a running mtad. `mtactl [-c FILE] status|stats [--json]|reload|stop|loglevel LEVEL`.
#include <cstdio>
#include <string>
#include <unistd.h>

#include "common/tool_config.h"
#include "common/control_client.h"
#include "common/version.h"

namespace {

const char* const kUsage = "usage: mtactl [-c config_file] status|stats [--json]|reload|stop|loglevel LEVEL\n";

}  // namespace

int main(int argc, char** argv) {
    mta::ConfigOption conf;
    if (int rc = mta::parse_config_option("mtactl", argc, argv, kUsage, conf, /*stop_at_operand=*/true); rc >= 0) return rc;
    if (optind >= argc) return mta::usage_error(kUsage);
    std::string cmd = argv[optind];
    if (cmd == "loglevel") {
        if (optind + 2 != argc) { fprintf(stderr, "mtactl: loglevel needs one of debug, info, warn, error\n"); return 2; }
        cmd += std::string(" ") + argv[optind + 1];
    } else if (cmd == "stats" && optind + 2 == argc && std::string(argv[optind + 1]) == "--json") {
        cmd = "stats json";
    } else if (cmd == "stats" && optind + 2 == argc) {
        fprintf(stderr, "mtactl: stats takes only --json\n");
        return 2;
    } else if (optind + 1 != argc || (cmd != "status" && cmd != "stats" && cmd != "reload" && cmd != "stop")) {
        fprintf(stderr, "mtactl: unknown command; use status, stats [--json], reload, stop or loglevel LEVEL\n");
        return 2;
    }
    mta::Config cfg;
    if (!mta::load_tool_config("mtactl", conf.path, conf.explicit_path, cfg)) return 1;
    std::string answer, err;
    if (!mta::control_request(cfg.control_socket, cmd, answer, err)) {
        fprintf(stderr, "mtactl: %s\n", err.c_str());
        return 1;
    }
    bool failed = answer.rfind("error:", 0) == 0;
    fputs(answer.c_str(), failed ? stderr : stdout);  // a refusal is a message for stderr, with a non-zero exit
    return failed ? 1 : 0;
}
