// The build's version string, and the `--version` / `--help` answer every program gives through one
// helper. The version is fixed at build time (see the Makefile: VERSION file, else git describe, else
// "unknown"; never a timestamp) and only common/version.cpp is compiled with it.
#pragma once

namespace mta {

const char* version();

enum class InfoRequest { none, version, help };

// The first "--version" or "--help" among argv[1..], looking no further than a "--" argument (after
// it come operands, e.g. sendmail recipients). Pure.
InfoRequest info_request(int argc, char* const* argv);

// Called first in main(), before anything that can fail or block (role daemons read fd 3 next): when
// argv asks for it, prints "NAME VERSION" or `usage` on stdout and exits 0. Otherwise returns.
void answer_info_request(const char* name, int argc, char* const* argv, const char* usage);

// For a bad command line: `usage` on stderr; returns `status` (2, or EX_USAGE for sendmail) for main.
int usage_error(const char* usage, int status = 2);

}  // namespace mta
