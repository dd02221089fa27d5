// newaliases: rebuild the alias_map table from its source text, the file of the same name without
// ".lmdb" (alias_map = /etc/mta/aliases.lmdb is built from /etc/mta/aliases). The same parser and
// atomic replacement as `mtamap -t aliases`; running daemons notice the new file by themselves.
//   newaliases [-c FILE]
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "common/file_util.h"
#include "common/table.h"
#include "common/tool_config.h"
#include "common/version.h"

namespace {

const char* const kUsage = "usage: newaliases [-c FILE]\n";

}  // namespace

int main(int argc, char** argv) {
    mta::ConfigOption conf;
    if (int rc = mta::parse_config_option("newaliases", argc, argv, kUsage, conf); rc >= 0) return rc;
    if (optind != argc) return mta::usage_error(kUsage);
    mta::Config cfg;
    if (!mta::load_tool_config("newaliases", conf.path, conf.explicit_path, cfg)) return 2;
    const std::string& out = cfg.alias_map;
    if (out.empty()) {
        fprintf(stderr, "newaliases: alias_map is not set in %s; nothing to build\n", cfg.source.c_str());
        return 1;
    }
    const std::string ext = ".lmdb";
    if (out.size() <= ext.size() || out.compare(out.size() - ext.size(), ext.size(), ext) != 0) {
        fprintf(stderr, "newaliases: alias_map %s does not end in .lmdb, so it has no source file to build from\n",
                out.c_str());
        return 1;
    }
    std::string source = out.substr(0, out.size() - ext.size());
    std::string text;
    if (!mta::read_file(source, text)) {
        fprintf(stderr, "newaliases: %s: %s\n", source.c_str(), strerror(errno));
        return 1;
    }
    mta::table::Entries entries;
    std::vector<std::string> errors;
    if (!mta::table::parse_source(text, mta::table::Kind::aliases, entries, errors, &mta::table::hash_password)) {
        for (auto& e : errors)  // "line N: ..." -> "FILE:N: ..."
            fprintf(stderr, "newaliases: %s:%s\n", source.c_str(), e.c_str() + (e.rfind("line ", 0) == 0 ? 5 : 0));
        return 1;
    }
    std::string err;
    if (!mta::table::write_table(out, entries, 0644, err)) {  // world-readable: sendmail expands aliases too
        fprintf(stderr, "newaliases: %s\n", err.c_str());
        return 1;
    }
    printf("newaliases: %s: %zu aliases\n", out.c_str(), entries.size());
    return 0;
}
