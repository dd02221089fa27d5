// mtadkim: DKIM keys and checks for the admin.
//   keygen  writes a new private key file and prints the TXT record to publish;
//   check   compares the record published in DNS (asked through the running resolver, like mtadns)
//           with the local key;
//   verify  verifies the DKIM signatures of a message file, with the keys from DNS, and prints the
//           Authentication-Results line mta-msgauth would add.
// Trusts its command line and the key files (root's); the message file and DNS answers are untrusted.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <grp.h>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "common/address.h"
#include "common/control_client.h"
#include "common/fd.h"
#include "common/file_util.h"
#include "common/json.h"
#include "common/tool_config.h"
#include "common/version.h"
#include "msgauth/auth_results.h"
#include "msgauth/dkim_canon.h"
#include "msgauth/dkim_keygen.h"
#include "msgauth/dkim_tags.h"
#include "msgauth/dkim_verify.h"

using namespace mta;
using namespace mta::msgauth;

namespace {

const char* const kUsage =
    "usage: mtadkim [--json] keygen -d DOMAIN -s SELECTOR -a rsa|ed25519 [-b BITS] [-o KEYFILE]\n"
    "       mtadkim [--json] [-c config_file] check -d DOMAIN -s SELECTOR [-k KEYFILE]\n"
    "       mtadkim [--json] [-c config_file] verify FILE|-\n";

constexpr const char* kKeyDir = "/etc/mta/dkim";
constexpr const char* kKeyGroup = "_mtaauth";       // mta-msgauth's user group (DESIGN.md §2)
constexpr std::size_t kMaxMessageFile = 64u << 20;  // verify reads the whole message

struct Args {
    bool json = false;
    std::string config = kDefaultConfigPath;
    bool explicit_config = false;
    std::string command, domain, selector, algorithm, keyfile, file;
    int bits = 0;
};

int fail(const std::string& msg, int status = 1) {
    fprintf(stderr, "mtadkim: %s\n", msg.c_str());
    return status;
}

std::string default_keyfile(const Args& a) { return std::string(kKeyDir) + "/" + a.domain + "." + a.selector + ".key"; }

// Domain and selector become a DNS name and a file name: LDH labels only, lower-cased.
bool valid_names(Args& a, std::string& err) {
    a.domain = addr::lower(a.domain);
    if (!a.domain.empty() && a.domain.back() == '.') a.domain.pop_back();
    if (a.domain.empty() || !valid_dns_name(a.domain, false)) { err = "invalid domain: -d " + a.domain; return false; }
    if (a.selector.empty() || !valid_dns_name(a.selector, false) || a.selector.size() > 63 * 2) {
        err = "invalid selector: -s " + a.selector;
        return false;
    }
    a.selector = addr::lower(a.selector);
    return true;
}

// ---- keygen ----

// Writes the key file exclusively (an existing key is never replaced: its record may be published),
// 0640 root:_mtaauth when that group exists, else 0600.
bool write_key_file(const std::string& path, const std::string& pem, std::string& note, std::string& err) {
    gid_t gid = gid_t(-1);
    if (geteuid() == 0) {
        if (struct group* g = getgrnam(kKeyGroup)) gid = g->gr_gid;
    }
    UniqueFd fd(open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) {
        err = path + ": " + strerror(errno) +
              (errno == EEXIST ? " (a key is never overwritten: remove it first, and publish the new record)" : "");
        return false;
    }
    bool ok = true;
    if (gid != gid_t(-1)) ok = fchown(fd.get(), 0, gid) == 0 && fchmod(fd.get(), 0640) == 0;
    else note = std::string("group ") + kKeyGroup + " does not exist: the key file is 0600, readable by root only";
    ok = ok && write_all(fd.get(), pem) && fsync(fd.get()) == 0;
    if (!ok) {
        err = path + ": " + strerror(errno);
        unlink(path.c_str());
        return false;
    }
    return true;
}

int keygen(Args& a) {
    std::string err;
    if (!valid_names(a, err)) return fail(err, 2);
    DkimKeyType type;
    if (a.algorithm == "rsa") type = DkimKeyType::rsa;
    else if (a.algorithm == "ed25519") type = DkimKeyType::ed25519;
    else return fail("-a must be rsa or ed25519", 2);
    if (type == DkimKeyType::ed25519 && a.bits) return fail("-b applies to rsa keys only", 2);
    bool default_path = a.keyfile.empty();
    if (default_path) {
        a.keyfile = default_keyfile(a);
        if (mkdir("/etc/mta", 0755) != 0 && errno != EEXIST) return fail(std::string("/etc/mta: ") + strerror(errno));
        if (mkdir(kKeyDir, 0750) == 0) {
            if (geteuid() == 0)
                if (struct group* g = getgrnam(kKeyGroup)) (void)!chown(kKeyDir, 0, g->gr_gid);
        } else if (errno != EEXIST) {
            return fail(std::string(kKeyDir) + ": " + strerror(errno));
        }
    }
    DkimPrivateKey key;
    if (!generate_private_key(type, a.bits, key, err)) return fail(err);
    std::string pem = private_key_pem(key), record = public_key_record(key);
    if (pem.empty() || record.empty()) return fail("cannot encode the new key");
    std::string note;
    if (!write_key_file(a.keyfile, pem, note, err)) return fail(err);
    if (!note.empty()) fprintf(stderr, "mtadkim: %s\n", note.c_str());
    std::string line = txt_record_line(a.selector, a.domain, record);
    if (a.json) {
        printf("{\"domain\":%s,\"selector\":%s,\"algorithm\":%s,\"bits\":%d,\"key_file\":%s,\"record\":%s,\"zone_line\":%s}\n",
               json_string(a.domain).c_str(), json_string(a.selector).c_str(), json_string(a.algorithm).c_str(), key.bits,
               json_string(a.keyfile).c_str(), json_string(record).c_str(), json_string(line).c_str());
    } else {
        printf("%s\n", line.c_str());
    }
    return 0;
}

// ---- check ----

bool load_key_file(const std::string& path, DkimPrivateKey& key, std::string& err) {
    std::string pem;
    errno = 0;
    if (!read_file(path, pem, 1 << 20)) { err = path + ": " + (errno ? strerror(errno) : "larger than 1 MiB"); return false; }
    if (!load_private_key(pem, key, err)) { err = path + ": " + err; return false; }
    return true;
}

int check(Args& a) {
    std::string err;
    if (!valid_names(a, err)) return fail(err, 2);
    if (a.keyfile.empty()) a.keyfile = default_keyfile(a);
    DkimPrivateKey key;
    if (!load_key_file(a.keyfile, key, err)) return fail(err);
    DkimKey local;
    if (!parse_dkim_key(public_key_record(key), local, err)) return fail("local key: " + err);
    Config cfg;
    if (!load_tool_config("mtadkim", a.config, a.explicit_config, cfg)) return 1;
    std::string name = a.selector + "._domainkey." + a.domain;
    ResolveAnswer ans;
    if (!control_resolve(cfg.control_socket, name, 16, ans, err)) return fail(err);
    // matches: a published record carries this key; other: records that parse but carry another key.
    std::size_t matches = 0, other = 0, bad = 0;
    std::string problem;
    if (ans.ok()) {
        for (auto& r : ans.records) {
            DkimKey pub;
            std::string perr;
            if (!parse_dkim_key(r, pub, perr)) { bad++; problem = perr; continue; }
            if (pub.revoked) { other++; problem = "the published key is revoked (p= empty)"; continue; }
            if (pub.type == local.type && pub.public_key == local.public_key) matches++;
            else other++;
        }
    }
    std::string verdict, detail;
    if (!ans.ok() && ans.rcode != 3) { verdict = "error"; detail = "lookup failed: " + ans.status(); }
    else if (ans.rcode == 3 || ans.records.empty()) { verdict = "missing"; detail = "no key record published (" + ans.status() + ")"; }
    else if (matches && !other && !bad) { verdict = "match"; detail = "the published record matches " + a.keyfile; }
    else if (matches) { verdict = "ambiguous"; detail = "one record matches, but the name has " + std::to_string(ans.records.size()) + " TXT records"; }
    else if (other) { verdict = "mismatch"; detail = problem.empty() ? "the published key is not the key in " + a.keyfile : problem; }
    else { verdict = "malformed"; detail = "the published record is not a DKIM key: " + problem; }
    if (a.json) {
        printf("{\"name\":%s,\"key_file\":%s,\"result\":%s,\"detail\":%s,\"dnssec\":%s,\"expected\":%s}\n",
               json_string(name).c_str(), json_string(a.keyfile).c_str(), json_string(verdict).c_str(),
               json_string(detail).c_str(), json_string(ans.dnssec).c_str(), json_string(public_key_record(key)).c_str());
    } else {
        printf("%s: %s: %s\n", name.c_str(), verdict.c_str(), detail.c_str());
        if (verdict != "match") printf("publish: %s\n", txt_record_line(a.selector, a.domain, public_key_record(key)).c_str());
    }
    return verdict == "match" ? 0 : 1;
}

// ---- verify ----

bool read_message(const std::string& path, std::string& out, std::string& err) {
    if (path != "-") {
        errno = 0;
        if (read_file(path, out, kMaxMessageFile)) return true;
        err = path + ": " + (errno ? strerror(errno) : "larger than 64 MiB");
        return false;
    }
    char buf[65536];
    ssize_t n;
    while ((n = read(0, buf, sizeof buf)) > 0) {
        out.append(buf, std::size_t(n));
        if (out.size() > kMaxMessageFile) { err = "message larger than 64 MiB"; return false; }
    }
    if (n < 0) { err = std::string("stdin: ") + strerror(errno); return false; }
    return true;
}

// Files on disk (Maildir, mbox exports) usually end lines in LF alone; DKIM is defined on CRLF lines.
std::string to_crlf(const std::string& in) {
    std::string out;
    out.reserve(in.size() + in.size() / 32);
    for (std::size_t i = 0; i < in.size(); i++) {
        if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r')) out += '\r';
        out += in[i];
    }
    return out;
}

int verify(Args& a) {
    std::string raw, err;
    if (!read_message(a.file, raw, err)) return fail(err);
    Config cfg;
    if (!load_tool_config("mtadkim", a.config, a.explicit_config, cfg)) return 1;
    std::string msg = to_crlf(raw);
    HeaderSection hs;
    if (!parse_header_section(msg, hs, err)) return fail(a.file + ": " + err);
    DkimVerifier v(hs.fields, cfg.dkim_max_signatures, uint64_t(time(nullptr)));  // as mta-msgauth would
    v.feed_body(std::string_view(msg).substr(hs.body_offset));
    v.finish_body();
    while (!v.done()) {
        auto qs = v.queries();
        if (qs.empty()) break;
        for (auto& q : qs) {
            ResolveAnswer r;
            if (!control_resolve(cfg.control_socket, q.name, qtype_number(q.type), r, err)) return fail(err);
            v.answer(q, DnsAnswer::from_resolver(r.rcode, r.dnssec == "bogus", r.records));
        }
    }
    auto verdicts = v.results();
    std::vector<AuthMethodResult> methods;
    bool pass = false;
    for (auto& d : verdicts) {
        methods.push_back(dkim_method(d));
        pass = pass || d.result == AuthResult::pass;
    }
    std::string header = authentication_results(cfg.hostname, methods);
    if (a.json) {
        std::string out = "{\"verdicts\":[";
        for (std::size_t i = 0; i < verdicts.size(); i++) {
            auto& d = verdicts[i];
            out += std::string(i ? "," : "") + "{\"result\":" + json_string(result_name(d.result)) +
                   ",\"reason\":" + json_string(d.reason) + ",\"domain\":" + json_string(d.domain) +
                   ",\"selector\":" + json_string(d.selector) + ",\"algorithm\":" + json_string(d.algorithm) +
                   ",\"body_length_limited\":" + (d.body_length_limited ? "true" : "false") +
                   ",\"testing\":" + (d.testing ? "true" : "false") + "}";
        }
        out += "],\"ignored_signatures\":" + std::to_string(v.ignored_signatures()) +
               ",\"authentication_results\":" + json_string(header) + "}";
        printf("%s\n", out.c_str());
    } else {
        // The header as it would be prepended, with LF line ends for the terminal.
        std::string text;
        for (char c : header)
            if (c != '\r') text += c;
        fputs(text.c_str(), stdout);
        if (v.ignored_signatures())
            printf("(%zu more DKIM-Signature fields not examined)\n", v.ignored_signatures());
    }
    return pass ? 0 : 1;
}

bool parse_args(int argc, char** argv, Args& a) {
    int i = 1;
    auto value = [&](std::string& out) {
        if (i + 1 >= argc) return false;
        out = argv[++i];
        return true;
    };
    for (; i < argc; i++) {
        std::string s = argv[i];
        if (s == "--json") a.json = true;
        else if (s == "-c") { if (!value(a.config)) return false; a.explicit_config = true; }
        else if (s == "-d") { if (!value(a.domain)) return false; }
        else if (s == "-s") { if (!value(a.selector)) return false; }
        else if (s == "-a") { if (!value(a.algorithm)) return false; }
        else if (s == "-o" || s == "-k") { if (!value(a.keyfile)) return false; }
        else if (s == "-b") {
            std::string b;
            if (!value(b) || b.empty() || b.size() > 5 || b.find_first_not_of("0123456789") != std::string::npos) return false;
            a.bits = std::stoi(b);
        } else if (s == "-" || s[0] != '-') {
            if (a.command.empty()) a.command = s;
            else if (a.command == "verify" && a.file.empty()) a.file = s;
            else return false;
        } else {
            return false;
        }
    }
    if (a.command == "keygen") return !a.domain.empty() && !a.selector.empty() && !a.algorithm.empty() && a.file.empty();
    if (a.command == "check") return !a.domain.empty() && !a.selector.empty() && a.algorithm.empty() && !a.bits;
    if (a.command == "verify")
        return !a.file.empty() && a.domain.empty() && a.selector.empty() && a.keyfile.empty() && a.algorithm.empty();
    return false;
}

}  // namespace

int main(int argc, char** argv) {
    answer_info_request("mtadkim", argc, argv, kUsage);
    Args a;
    if (!parse_args(argc, argv, a)) return usage_error(kUsage);
    if (a.command == "keygen") return keygen(a);
    if (a.command == "check") return check(a);
    return verify(a);
}
