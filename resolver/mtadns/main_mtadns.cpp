// mtadns: what the MTA would see and do for a mail domain, asked through mtad's control socket of the
// running resolver (so the answers, DNSSEC status and forwarder are exactly the MTA's): MX set in
// order with addresses, DNSSEC status, TLSA per MX host and the resulting outbound TLS level.
// Trusts the control socket's text format; record text was already made printable by mtad.
#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <unistd.h>
#include <vector>

#include "common/address.h"
#include "common/routing.h"
#include "common/table.h"
#include "common/tool_config.h"
#include "msgauth/dkim_crypto.h"
#include "msgauth/dmarc_record.h"
#include "msgauth/signing_keys.h"
#include "resolver/mtadns/check_sender.h"
#include "common/control_client.h"
#include "common/mta_sts.h"
#include "common/version.h"

namespace {

using Answer = mta::ResolveAnswer;

bool ask(const mta::Config& cfg, const std::string& name, int qtype, Answer& a, std::string& err) {
    return mta::control_resolve(cfg.control_socket, name, qtype, a, err);
}

// RFC 7672 §3.1 usable TLSA: DANE-TA(2)/DANE-EE(3), selector 0/1, matching type 0/1/2 (mta-smtp's
// smtp_dane.cpp applies the same rule, with the data length checks, before handing records to OpenSSL).
bool usable_tlsa(const std::string& rec) {
    unsigned u = 9, s = 9, m = 9;
    return sscanf(rec.c_str(), "%u %u %u", &u, &s, &m) == 3 && (u == 2 || u == 3) && s <= 1 && m <= 2;
}

struct Mx {
    unsigned pref = 0;
    std::string host;
};

const char* const kUsage =
    "usage: mtadns [-c config_file] DOMAIN\n"
    "       mtadns [-c config_file] --check-sender DOMAIN [--ip ADDRESS]... [--json]\n";

// --check-sender: what this MTA would need to be a good sender for the domain (check_sender.h).
int check_sender(const mta::Config& cfg, const std::string& domain, std::vector<std::string> ips, bool json) {
    mta::dnscheck::SenderInput in;
    in.domain = domain;
    in.helo = cfg.smtp_helo_name.empty() ? cfg.hostname : cfg.smtp_helo_name;
    const bool given = !ips.empty();  // --ip: only those
    if (!given) {
        if (!cfg.smtp_bind_address.empty()) ips.push_back(cfg.smtp_bind_address);
        if (!cfg.smtp_bind_address6.empty()) ips.push_back(cfg.smtp_bind_address6);
    }
    if (!cfg.source_addresses.empty()) {  // the pools' addresses, each with its own EHLO name
        std::string err;
        mta::table::Entries entries;
        auto t = mta::table::Table::open(cfg.source_addresses, err);
        if (!t || !t->entries(entries, 10000, err)) {
            fprintf(stderr, "mtadns: source_addresses: %s\n", err.c_str());
            return 1;
        }
        for (auto& [k, v] : entries) {
            mta::SourceAddress a;
            if (!mta::parse_source_address(k, v, a, err)) continue;
            in.helos[a.address] = a.helo;
            if (!given && std::find(ips.begin(), ips.end(), a.address) == ips.end()) ips.push_back(a.address);
        }
    }
    in.addresses = std::move(ips);
    in.dnsbl = cfg.dnsbl_zones;
    if (!cfg.dkim_keys.empty()) {
        mta::msgauth::SigningKeys keys;
        std::vector<mta::ConfigError> errors;
        if (!keys.load(cfg.dkim_keys, cfg.source, errors)) {
            in.dkim_problem = errors.empty() ? cfg.dkim_keys : errors.front().str();
        } else {
            for (const auto* k : keys.for_domain(domain))
                in.dkim.push_back({k->domain, k->selector, mta::msgauth::public_key_record(k->key)});
        }
    }
    mta::msgauth::PublicSuffixList psl;
    std::string err;
    if (psl.load_file(psl_dist_filename() ? psl_dist_filename() : "", err) || psl.load_builtin(err))
        in.org_domain = psl.organizational_domain(domain);
    auto resolve = [&cfg](const std::string& name, int qtype, Answer& a, std::string& e) {
        return ask(cfg, name, qtype, a, e);
    };
    // One question first: an unreachable mtad is the tool's error, not a finding about the domain.
    Answer probe;
    if (!ask(cfg, domain, 15, probe, err)) {
        fprintf(stderr, "mtadns: %s\n", err.c_str());
        return 1;
    }
    auto findings = mta::dnscheck::check_sender(in, resolve);
    std::string out = json ? mta::dnscheck::format_json(domain, findings) : mta::dnscheck::format_text(findings);
    fwrite(out.data(), 1, out.size(), stdout);
    return mta::dnscheck::any_fail(findings) ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
    // The long options of --check-sender are taken out before the common -c parsing sees them.
    std::vector<char*> args{argv[0]};
    std::vector<std::string> ips;
    bool sender = false, json = false;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (a == "--check-sender") sender = true;
        else if (a == "--json") json = true;
        else if (a == "--ip") {
            if (i + 1 >= argc) return mta::usage_error(kUsage);
            ips.push_back(argv[++i]);
        } else args.push_back(argv[i]);
    }
    if (!sender && (json || !ips.empty())) return mta::usage_error(kUsage);
    int nargs = int(args.size());
    args.push_back(nullptr);
    argc = nargs;
    argv = args.data();
    mta::ConfigOption conf;
    if (int rc = mta::parse_config_option("mtadns", argc, argv, kUsage, conf); rc >= 0) return rc;
    if (optind + 1 != argc) return mta::usage_error(kUsage);
    std::string domain = mta::addr::lower(argv[optind]);
    if (!domain.empty() && domain.back() == '.') domain.pop_back();
    if (!mta::addr::valid_domain(domain)) { fprintf(stderr, "mtadns: invalid domain name\n"); return 2; }
    for (auto& ip : ips) {
        unsigned char buf[16];
        if (inet_pton(AF_INET, ip.c_str(), buf) != 1 && inet_pton(AF_INET6, ip.c_str(), buf) != 1) {
            fprintf(stderr, "mtadns: --ip %s: not an IP address\n", ip.c_str());
            return 2;
        }
    }
    mta::Config cfg;
    if (!mta::load_tool_config("mtadns", conf.path, conf.explicit_path, cfg)) return 1;
    if (sender) return check_sender(cfg, domain, std::move(ips), json);
    std::string err;
    Answer mx;
    if (!ask(cfg, domain, 15, mx, err)) { fprintf(stderr, "mtadns: %s\n", err.c_str()); return 1; }
    printf("domain %s\nMX: %s\n", domain.c_str(), mx.status().c_str());
    if (mx.dnssec == "bogus" || (mx.rcode != 0 && mx.rcode != 3)) {
        printf("result: deferred (4.4.3 temporary DNS failure)\n");
        return 0;
    }
    if (mx.rcode == 3) {
        printf("result: bounced (5.1.2 domain not found)\n");
        return 0;
    }
    std::vector<Mx> hosts;
    for (auto& r : mx.records) {
        Mx m;
        char name[300] = {};
        if (sscanf(r.c_str(), "%u %299s", &m.pref, name) != 2) continue;
        m.host = name;
        if (m.host.size() > 1 && m.host.back() == '.') m.host.pop_back();
        hosts.push_back(m);
    }
    if (std::any_of(hosts.begin(), hosts.end(), [](const Mx& m) { return m.host == "."; })) {
        printf("null MX (RFC 7505)\nresult: bounced (5.1.10 domain does not accept mail)\n");
        return 0;
    }
    bool implicit = hosts.empty();
    if (implicit) hosts.push_back({0, domain});
    std::stable_sort(hosts.begin(), hosts.end(), [](const Mx& a, const Mx& b) { return a.pref < b.pref; });
    bool sts_level = cfg.smtp_tls_level == "mta-sts";
    bool dane = cfg.smtp_tls_level == "dane" || sts_level;  // RFC 8461 §2: DANE wins where it applies
    // The MTA-STS policy exactly as mta-smtp would get it (the resolver fetches or uses its cache).
    mta::sts::Lookup sts;
    {
        Answer p;
        if (!ask(cfg, domain, mta::sts::kQtypeMtaSts, p, err)) { fprintf(stderr, "mtadns: %s\n", err.c_str()); return 1; }
        if (p.rcode != 0) {
            printf("MTA-STS: lookup failed: %s\n", p.status().c_str());
        } else if (!mta::sts::decode_lookup(p.records, sts)) {
            printf("MTA-STS: malformed answer from the resolver\n");
        } else if (!sts.found) {
            printf("MTA-STS: none (%s)\n", p.text.empty() ? "no policy" : p.text.c_str());
        } else {
            printf("MTA-STS: mode %s, max_age %llu, id %s, %s (expires %llu)%s%s\n", mta::sts::mode_name(sts.policy.mode),
                   (unsigned long long)sts.policy.max_age, sts.id.c_str(), sts.source.c_str(),
                   (unsigned long long)sts.expires, p.text.empty() ? "" : ", ", p.text.c_str());
            for (auto& m : sts.policy.mx) printf("  mx: %s\n", m.c_str());
        }
    }
    auto sts_decision = [&](const std::string& host) -> std::string {
        if (!sts.found || sts.policy.mode == mta::sts::Mode::none) return "may (no MTA-STS policy in force)";
        bool match = mta::sts::policy_matches(sts.policy, host);
        if (sts.policy.mode == mta::sts::Mode::testing)
            return std::string("may (MTA-STS testing: ") + (match ? "" : "host not in the policy; ") +
                   "failures are only logged)";
        if (!match) return "skip (MTA-STS enforce: host not in the policy, not used)";
        return "mta-sts (TLS required, certificate verified by WebPKI for " + host + ")";
    };
    for (auto& h : hosts) {
        if (implicit) printf("no MX: implicit MX %s\n", h.host.c_str());
        else printf("MX %u %s\n", h.pref, h.host.c_str());
        bool addr_secure = true;
        for (int qt : {1, 28}) {
            Answer a;
            if (!ask(cfg, h.host, qt, a, err)) { fprintf(stderr, "mtadns: %s\n", err.c_str()); return 1; }
            printf("  %s: %s\n", qt == 1 ? "A" : "AAAA", a.status().c_str());
            for (auto& r : a.records) printf("    %s\n", r.c_str());
            if (a.dnssec != "secure") addr_secure = false;
        }
        std::string tlsa_name = "_" + std::to_string(cfg.smtp_port) + "._tcp." + h.host;
        Answer t;
        if (!ask(cfg, tlsa_name, 52, t, err)) { fprintf(stderr, "mtadns: %s\n", err.c_str()); return 1; }
        printf("  TLSA %s: %s\n", tlsa_name.c_str(), t.status().c_str());
        std::size_t usable = 0;
        for (auto& r : t.records) {
            bool u = usable_tlsa(r);
            usable += u;
            printf("    %s%s\n", r.c_str(), u ? "" : "  (unusable for SMTP)");
        }
        std::string level = cfg.smtp_tls_level;
        if (dane) {
            // RFC 7672 §2.2, as mta-smtp applies it.
            bool chain = mx.dnssec == "secure" && addr_secure;
            if (!chain) level = "may (DANE not applicable: MX or address records not DNSSEC-secure)";
            else if (t.dnssec == "bogus" || (t.rcode != 0 && t.rcode != 3)) level = "skip (TLSA lookup failed: host not used)";
            else if (t.dnssec != "secure" || t.records.empty()) level = "may (no secure TLSA records)";
            else if (!usable) level = "encrypt (secure TLSA records, none usable)";
            else level = "dane (TLS required, certificate verified against " + std::to_string(usable) + " TLSA record" +
                         (usable == 1 ? ")" : "s)");
        }
        if (sts_level && level.rfind("may", 0) == 0) level = sts_decision(h.host);
        printf("  TLS level: %s\n", level.c_str());
    }
    return 0;
}
