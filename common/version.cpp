// Version string and --version/--help handling (see version.h). MTA_VERSION comes from the Makefile,
// on this file's compile line only, so a new version rebuilds one object and no timestamp is embedded.
#include "common/version.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#ifndef MTA_VERSION
#define MTA_VERSION "unknown"
#endif

namespace mta {

const char* version() { return MTA_VERSION; }

InfoRequest info_request(int argc, char* const* argv) {
    for (int i = 1; i < argc && argv[i]; i++) {
        if (strcmp(argv[i], "--") == 0) break;
        if (strcmp(argv[i], "--version") == 0) return InfoRequest::version;
        if (strcmp(argv[i], "--help") == 0) return InfoRequest::help;
    }
    return InfoRequest::none;
}

void answer_info_request(const char* name, int argc, char* const* argv, const char* usage) {
    InfoRequest r = info_request(argc, argv);
    if (r == InfoRequest::none) return;
    if (r == InfoRequest::version) printf("%s %s\n", name, version());
    else fputs(usage, stdout);
    // A full disk or a closed stdout must not look like success.
    exit(fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1);
}

int usage_error(const char* usage, int status) {
    fputs(usage, stderr);
    return status;
}

}  // namespace mta
