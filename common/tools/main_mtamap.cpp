// mtamap: build and query the LMDB lookup tables (auth_users, local_recipients, aliases, virtual,
// transport_map, smtp_tls_policy_map, dkim_keys, destination_policy, source_addresses, sender_source_pools).
// Trusts its command line and source file (the admin's); writes tables only by atomic rename.
//   mtamap [-c FILE] [-t auth|aliases|virtual|recipients|dkim] SOURCE  build SOURCE.lmdb (".txt" dropped)
//   mtamap [-c FILE] -q KEY TABLE                                     print the value, exit 1 if absent
//   mtamap [-c FILE] -t transport|tls_policy -q DOMAIN TABLE          the entry the router would use
//                                                                     (exact, .parent..., *): "KEY VALUE"
#include <climits>
#include <cstdlib>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "common/tool_config.h"
#include "common/address.h"
#include "common/file_util.h"
#include "common/routing.h"
#include "common/table.h"
#include "common/version.h"

namespace {

const char* const kUsage =
    "usage: mtamap [-c FILE] [-t auth|aliases|virtual|recipients|transport|tls_policy|dkim|destination_policy|\n"
    "                            source_addresses|sender_pools] SOURCE\n"
    "       mtamap [-c FILE] [-t transport|tls_policy|destination_policy|sender_pools] -q KEY TABLE\n";

[[noreturn]] void usage() { exit(mta::usage_error(kUsage)); }

std::string output_path(const std::string& source) {
    const std::string txt = ".txt";
    if (source.size() > txt.size() && source.compare(source.size() - txt.size(), txt.size(), txt) == 0)
        return source.substr(0, source.size() - txt.size()) + ".lmdb";
    return source + ".lmdb";
}

int build(const std::string& source, mta::table::Kind kind) {
    std::string text;
    if (!mta::read_file(source, text)) {
        fprintf(stderr, "mtamap: %s: %s\n", source.c_str(), strerror(errno));
        return 1;
    }
    mta::table::Entries entries;
    std::vector<std::string> errors;
    // dkim entries remember where they were written (mtad -n reports a bad key as FILE:LINE).
    char abs[PATH_MAX];
    std::string origin = realpath(source.c_str(), abs) ? abs : source;
    if (!mta::table::parse_source(text, kind, entries, errors, &mta::table::hash_password, origin)) {
        for (auto& e : errors)  // "line N: ..." -> "FILE:N: ..."
            fprintf(stderr, "mtamap: %s:%s\n", source.c_str(), e.c_str() + (e.rfind("line ", 0) == 0 ? 5 : 0));
        return 1;
    }
    std::string out = output_path(source);
    std::string err;
    // Password hashes are secrets: readable by root only (mta-smtpd opens the table before it drops root).
    mode_t mode = kind == mta::table::Kind::auth ? 0600 : 0644;
    if (!mta::table::write_table(out, entries, mode, err)) {
        fprintf(stderr, "mtamap: %s\n", err.c_str());
        return 1;
    }
    printf("mtamap: %s: %zu entries\n", out.c_str(), entries.size());
    return 0;
}

int query(const std::string& key, const std::string& path, bool domain_lookup) {
    std::string err;
    auto t = mta::table::Table::open(path, err);
    if (!t) {
        fprintf(stderr, "mtamap: %s\n", err.c_str());
        return 2;
    }
    if (domain_lookup) {  // what the queue's router would find for this recipient domain
        auto hit = mta::lookup_domain([&](std::string_view k) { return t->lookup(k); }, mta::addr::lower(key));
        if (!hit) return 1;
        printf("%s %s\n", hit->first.c_str(), hit->second.c_str());
        return 0;
    }
    auto v = t->lookup(key);
    if (!v) return 1;
    printf("%s\n", v->c_str());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    mta::answer_info_request("mtamap", argc, argv, kUsage);
    std::string conf, type = "recipients", qkey;
    bool do_query = false;
    int opt;
    while ((opt = getopt(argc, argv, "c:t:q:h")) != -1) {
        switch (opt) {
        case 'c': conf = optarg; break;
        case 't': type = optarg; break;
        case 'q': do_query = true; qkey = optarg; break;
        default: usage();
        }
    }
    if (optind + 1 != argc) usage();
    if (!conf.empty()) {  // only checked: the tables are named on the command line
        mta::Config c;
        if (!mta::load_tool_config("mtamap", conf, true, c)) return 2;
    }
    if (do_query) return query(qkey, argv[optind], type == "transport" || type == "tls_policy" || type == "destination_policy" ||
                                                          type == "sender_pools");
    auto kind = mta::table::parse_kind(type);
    if (!kind) usage();
    return build(argv[optind], *kind);
}
