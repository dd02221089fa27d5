// mtadns --check-sender (see check_sender.h). SPF is the same check_host() as mta-msgauth's, driven one
// question at a time; DKIM keys and DMARC records are parsed by msgauth's parsers, so the verdicts here
// are the ones this MTA's own verifier would reach.
#include "resolver/mtadns/check_sender.h"

#include <strings.h>

#include "common/address.h"
#include "common/json.h"
#include "common/mta_sts.h"
#include "common/text.h"
#include "msgauth/dkim_keygen.h"
#include "msgauth/dkim_tags.h"
#include "msgauth/dmarc_record.h"
#include "msgauth/spf.h"
#include "msgauth/spf_record.h"

namespace mta::dnscheck {
namespace {

constexpr int kA = 1, kPtr = 12, kMx = 15, kTxt = 16, kAaaa = 28;

struct Report {
    std::vector<Finding> out;
    void ok(const char* check, const std::string& subj, std::string detail) {
        out.push_back({"OK", check, subj, std::move(detail), ""});
    }
    void warn(const char* check, const std::string& subj, std::string detail, std::string fix) {
        out.push_back({"WARN", check, subj, std::move(detail), std::move(fix)});
    }
    void fail(const char* check, const std::string& subj, std::string detail, std::string fix) {
        out.push_back({"FAIL", check, subj, std::move(detail), std::move(fix)});
    }
};

// Asks; a tool-level failure (mtad unreachable) reads as "no answer" with the reason in `a.text`.
ResolveAnswer ask(const Resolve& resolve, const std::string& name, int qtype) {
    ResolveAnswer a;
    std::string err;
    if (!resolve(name, qtype, a, err)) {
        a = ResolveAnswer{};
        a.text = err;
    }
    return a;
}

std::vector<std::string> txt_starting(const ResolveAnswer& a, const char* prefix) {
    std::vector<std::string> out;
    std::size_t n = strlen(prefix);
    if (!a.ok()) return out;
    for (auto& r : a.records)
        if (r.size() >= n && strncasecmp(r.c_str(), prefix, n) == 0) out.push_back(r);
    return out;
}

bool same_name(std::string a, std::string b) {
    if (!a.empty() && a.back() == '.') a.pop_back();
    if (!b.empty() && b.back() == '.') b.pop_back();
    return strcasecmp(a.c_str(), b.c_str()) == 0;
}

void check_mx(const SenderInput& in, const Resolve& resolve, Report& r) {
    ResolveAnswer mx = ask(resolve, in.domain, kMx);
    if (mx.rcode == 3) {
        r.fail("mx", in.domain, "the domain does not exist (NXDOMAIN)", "create the zone of " + in.domain);
    } else if (!mx.ok()) {
        r.warn("mx", in.domain, "the MX lookup failed: " + mx.status(), "check the domain's name servers");
    } else if (mx.records.empty()) {
        r.warn("mx", in.domain, "no MX record: replies go to its A/AAAA record",
               "publish an MX record so that bounces and DMARC reports reach the domain");
    } else {
        for (auto& rec : mx.records)
            if (rec.size() >= 2 && rec.compare(rec.size() - 2, 2, " .") == 0) {
                r.fail("mx", in.domain, "null MX (RFC 7505): the domain accepts no mail, so bounces to its senders "
                       "are lost", "publish real MX records for " + in.domain);
                return;
            }
        std::string list;
        for (auto& rec : mx.records) list += (list.empty() ? "" : ", ") + rec;
        r.ok("mx", in.domain, std::to_string(mx.records.size()) + " MX: " + list);
    }
}

// The spf verdict for `ip` sending as postmaster@domain, as mta-msgauth would reach it.
// The EHLO name mail from `addr` gives: its source_addresses helo=, else smtp_helo_name/hostname.
const std::string& helo_of(const SenderInput& in, const std::string& addr) {
    auto it = in.helos.find(addr);
    return it == in.helos.end() || it->second.empty() ? in.helo : it->second;
}

void check_spf(const SenderInput& in, const std::string& addr, const msgauth::IpAddress& ip, const Resolve& resolve,
               Report& r) {
    msgauth::SpfRequest req;
    req.ip = ip;
    req.sender = "postmaster@" + in.domain;
    req.helo = helo_of(in, addr);
    req.receiver = "check-sender.invalid";
    msgauth::SpfCheck spf(req, msgauth::SpfIdentity::mailfrom);
    for (int i = 0; !spf.done() && i < 300; i++) {
        const msgauth::DnsQuery& q = spf.query();
        ResolveAnswer a = ask(resolve, q.name, msgauth::qtype_number(q.type));
        spf.answer(msgauth::DnsAnswer::from_resolver(uint64_t(a.rcode), a.dnssec == "bogus", a.records));
    }
    std::string res = msgauth::result_name(spf.result());
    std::string how = spf.mechanism().empty() ? "" : " (" + spf.mechanism() + ")";
    std::string fix = "add ip" + std::string(ip.v6 ? "6" : "4") + ":" + addr + " to the SPF record of " + in.domain;
    switch (spf.result()) {
    case msgauth::AuthResult::pass: r.ok("spf", addr, "pass" + how); break;
    case msgauth::AuthResult::none:
        r.fail("spf", addr, "no SPF record at " + in.domain,
               "publish " + in.domain + ". IN TXT \"v=spf1 ip" + (ip.v6 ? "6" : "4") + ":" + addr + " -all\"");
        break;
    case msgauth::AuthResult::fail:
    case msgauth::AuthResult::softfail:
        r.fail("spf", addr, res + how + ": the record does not authorize this address", fix);
        break;
    case msgauth::AuthResult::neutral:
        r.warn("spf", addr, "neutral" + how + ": receivers treat it like no record", fix);
        break;
    case msgauth::AuthResult::permerror:
        r.fail("spf", addr, "permerror: " + spf.problem(), "repair the SPF record of " + in.domain);
        break;
    default: r.warn("spf", addr, res + ": " + spf.problem(), "try again; check the domain's name servers"); break;
    }
}

void check_address(const SenderInput& in, const std::string& addr, const Resolve& resolve, Report& r) {
    msgauth::IpAddress ip;
    if (!msgauth::parse_ip(addr, ip)) {
        r.fail("source", addr, "not an IP address", "give --ip an IPv4 or IPv6 address");
        return;
    }
    const std::string& helo = helo_of(in, addr);
    ResolveAnswer ptr = ask(resolve, msgauth::reverse_name(ip), kPtr);
    std::string name = ptr.ok() && !ptr.records.empty() ? ptr.records.front() : "";
    if (!name.empty() && name.back() == '.') name.pop_back();
    if (name.empty()) {
        r.fail("rdns", addr, "no reverse DNS (PTR) record (" + ptr.status() + ")",
               "ask the owner of " + addr + " (your provider) to set its PTR to " + helo);
    } else {
        r.ok("rdns", addr, "PTR " + name);
        ResolveAnswer fwd = ask(resolve, name, ip.v6 ? kAaaa : kA);
        bool back = false;
        for (auto& rec : fwd.records) {
            msgauth::IpAddress x;
            back = back || (msgauth::parse_ip(rec, x) && x == ip);
        }
        if (back && fwd.ok()) r.ok("fcrdns", addr, name + " resolves back to " + addr);
        else
            r.fail("fcrdns", addr, "the PTR name " + name + " does not resolve to " + addr + " (" + fwd.status() + ")",
                   "add " + name + ". IN " + (ip.v6 ? "AAAA " : "A ") + addr);
        if (same_name(name, helo)) r.ok("helo", addr, "EHLO name " + helo + " is the PTR name");
        else
            r.warn("helo", addr, "EHLO name " + helo + " is not the PTR name " + name,
                   (in.helos.count(addr) ? "set helo=" + name + " for " + addr + " in source_addresses"
                                         : "set smtp_helo_name = " + name) + " (or change the PTR)");
    }
    check_spf(in, addr, ip, resolve, r);
    if (in.dnsbl.empty()) return;
    std::string listed, clean;
    for (auto& z : in.dnsbl) {
        std::string q = dnsbl_query_name(addr, z.zone);
        if (q.empty()) continue;
        ResolveAnswer a = ask(resolve, q, kA);
        bool hit = false;
        for (auto& rec : a.records) hit = hit || (a.ok() && dnsbl_match(z, rec));
        if (hit && z.weight > 0) listed += (listed.empty() ? "" : ", ") + z.zone;
        else clean += (clean.empty() ? "" : ", ") + z.zone;
    }
    if (!listed.empty())
        r.fail("dnsbl", addr, "listed on " + listed, "find out why at each list's web site and request delisting");
    else r.ok("dnsbl", addr, "not listed on " + clean);
}

void check_dkim(const SenderInput& in, const Resolve& resolve, Report& r) {
    if (!in.dkim_problem.empty()) {
        r.warn("dkim", in.domain, "dkim_keys could not be read: " + in.dkim_problem, "run as root, or fix dkim_keys");
        return;
    }
    if (in.dkim.empty()) {
        r.fail("dkim", in.domain, "no key for " + in.domain + " (or a parent) in dkim_keys: mail is sent unsigned",
               "mtadkim keygen -d " + in.domain + " -s SELECTOR -a rsa, add it to dkim_keys and publish the record");
        return;
    }
    for (auto& k : in.dkim) {
        std::string name = k.selector + "._domainkey." + k.domain;
        msgauth::DkimKey local, pub;
        std::string err;
        if (!msgauth::parse_dkim_key(k.record, local, err)) {
            r.fail("dkim", name, "the local key: " + err, "fix dkim_keys");
            continue;
        }
        ResolveAnswer a = ask(resolve, name, kTxt);
        std::string publish = "publish " + msgauth::txt_record_line(k.selector, k.domain, k.record);
        bool match = false, other = false;
        for (auto& rec : a.records) {
            if (!a.ok() || !msgauth::parse_dkim_key(rec, pub, err)) continue;
            if (!pub.revoked && pub.type == local.type && pub.public_key == local.public_key) match = true;
            else other = true;
        }
        if (match && !other) r.ok("dkim", name, "the published key is the key in dkim_keys");
        else if (match) r.warn("dkim", name, "the key is published, beside other records", "remove the others");
        else if (!a.ok() && a.rcode != 3) r.warn("dkim", name, "lookup failed: " + a.status(), "try again");
        else if (other) r.fail("dkim", name, "a different key is published", publish);
        else r.fail("dkim", name, "no key record published", publish);
    }
}

void check_dmarc(const SenderInput& in, const Resolve& resolve, Report& r) {
    std::string at = in.domain;
    std::vector<std::string> recs = txt_starting(ask(resolve, "_dmarc." + at, kTxt), "v=DMARC1");
    if (recs.empty() && !in.org_domain.empty() && in.org_domain != in.domain) {
        at = in.org_domain;
        recs = txt_starting(ask(resolve, "_dmarc." + at, kTxt), "v=DMARC1");
    }
    std::string fix = "publish _dmarc." + in.domain + ". IN TXT \"v=DMARC1; p=none; rua=mailto:dmarc-reports@" +
                      in.domain + "\" and tighten p= once the reports are clean";
    if (recs.empty()) return r.fail("dmarc", in.domain, "no DMARC record", fix);
    if (recs.size() > 1) return r.fail("dmarc", "_dmarc." + at, "more than one DMARC record: receivers ignore both", "keep one");
    msgauth::DmarcRecord d;
    std::string err;
    if (!msgauth::parse_dmarc_record(recs[0], d, err))
        return r.fail("dmarc", "_dmarc." + at, "invalid: " + err, "repair the record: " + recs[0]);
    const char* p = d.policy == msgauth::DmarcPolicy::reject ? "reject"
                    : d.policy == msgauth::DmarcPolicy::quarantine ? "quarantine" : "none";
    std::string rua = join(d.rua);
    std::string what = std::string("p=") + p + (rua.empty() ? ", no rua" : ", rua=" + rua) +
                       (at != in.domain ? " (the organizational domain's record)" : "");
    if (d.policy == msgauth::DmarcPolicy::none)
        r.warn("dmarc", "_dmarc." + at, what + ": monitoring only", "move to p=quarantine, then p=reject");
    else if (rua.empty()) r.warn("dmarc", "_dmarc." + at, what, "add rua=mailto:... to receive aggregate reports");
    else r.ok("dmarc", "_dmarc." + at, what);
}

// The policy file as mta-smtp would get it (the resolver fetches it, or has it cached), and whether it
// lets senders reach the domain's own MX hosts.
void check_sts_policy(const SenderInput& in, const Resolve& resolve, Report& r) {
    ResolveAnswer p = ask(resolve, in.domain, sts::kQtypeMtaSts);
    sts::Lookup l;
    std::string subj = "https://mta-sts." + in.domain + "/.well-known/mta-sts.txt";
    if (p.rcode != 0 || !sts::decode_lookup(p.records, l) || !l.found)
        return r.fail("mta-sts", subj, "the record is published but no policy could be had (" +
                      (p.text.empty() ? p.status() : p.text) + "): senders that support MTA-STS keep retrying",
                      "serve the policy file over HTTPS with a valid certificate, or remove the _mta-sts record");
    std::string what = std::string("mode ") + sts::mode_name(l.policy.mode) + ", max_age " +
                       std::to_string(l.policy.max_age);
    if (l.policy.mode != sts::Mode::enforce)
        return r.warn("mta-sts", subj, what + ": not enforced", "switch to mode: enforce once TLS-RPT reports are clean");
    std::string missing;
    for (auto& rec : ask(resolve, in.domain, kMx).records) {
        std::string host = rec.substr(rec.find(' ') == std::string::npos ? 0 : rec.find(' ') + 1);
        if (!host.empty() && host.back() == '.') host.pop_back();
        if (!host.empty() && host != "." && !sts::policy_matches(l.policy, host))
            missing += (missing.empty() ? "" : ", ") + host;
    }
    if (!missing.empty())
        return r.fail("mta-sts", subj, what + ", but it does not list the MX " + missing +
                      ": senders enforcing it cannot deliver there", "add mx: lines for " + missing + " to the policy");
    r.ok("mta-sts", subj, what);
}

void check_tls_records(const SenderInput& in, const Resolve& resolve, Report& r) {
    ResolveAnswer sts = ask(resolve, "_mta-sts." + in.domain, kTxt);
    std::vector<std::string> recs = txt_starting(sts, "v=STSv1");
    if (recs.empty())
        r.warn("mta-sts", in.domain, "no MTA-STS record: receivers' mail to this domain can be downgraded",
               "publish _mta-sts." + in.domain + ". IN TXT \"v=STSv1; id=1\" and https://mta-sts." + in.domain +
                   "/.well-known/mta-sts.txt");
    else if (recs.size() > 1 || recs[0].find("id=") == std::string::npos)
        r.fail("mta-sts", "_mta-sts." + in.domain, "invalid record: " + recs[0], "one record \"v=STSv1; id=...\"");
    else check_sts_policy(in, resolve, r);
    recs = txt_starting(ask(resolve, "_smtp._tls." + in.domain, kTxt), "v=TLSRPTv1");
    if (recs.empty())
        r.warn("tls-rpt", in.domain, "no TLS-RPT record: nobody reports TLS failures to you",
               "publish _smtp._tls." + in.domain + ". IN TXT \"v=TLSRPTv1; rua=mailto:tls-reports@" + in.domain + "\"");
    else if (recs.size() > 1 || recs[0].find("rua=") == std::string::npos)
        r.fail("tls-rpt", "_smtp._tls." + in.domain, "invalid record: " + recs[0], "one record with rua=");
    else r.ok("tls-rpt", "_smtp._tls." + in.domain, recs[0]);
}

}  // namespace

std::vector<Finding> check_sender(const SenderInput& in, const Resolve& resolve) {
    Report r;
    check_mx(in, resolve, r);
    if (in.addresses.empty())
        r.warn("source", in.domain, "no source address to check",
               "give --ip ADDRESS, or set smtp_bind_address or source_addresses");
    for (auto& a : in.addresses) check_address(in, a, resolve, r);
    check_dkim(in, resolve, r);
    check_dmarc(in, resolve, r);
    check_tls_records(in, resolve, r);
    return r.out;
}

bool any_fail(const std::vector<Finding>& f) {
    for (auto& x : f)
        if (x.status == "FAIL") return true;
    return false;
}

std::string format_text(const std::vector<Finding>& f) {
    std::string s;
    std::size_t fails = 0, warns = 0;
    for (auto& x : f) {
        s += x.status + std::string(5 - std::min<std::size_t>(4, x.status.size()), ' ') + x.check + " " + x.subject +
             ": " + x.detail + "\n";
        if (!x.fix.empty()) s += "      fix: " + x.fix + "\n";
        fails += x.status == "FAIL";
        warns += x.status == "WARN";
    }
    return s + std::to_string(fails) + " FAIL, " + std::to_string(warns) + " WARN, " +
           std::to_string(f.size() - fails - warns) + " OK\n";
}

std::string format_json(const std::string& domain, const std::vector<Finding>& f) {
    std::string s = "{\"domain\":" + json_string(domain) + ",\"ready\":" + (any_fail(f) ? "false" : "true") + ",\"checks\":[";
    for (std::size_t i = 0; i < f.size(); i++)
        s += std::string(i ? "," : "") + "{\"status\":" + json_string(f[i].status) + ",\"check\":" + json_string(f[i].check) +
             ",\"subject\":" + json_string(f[i].subject) + ",\"detail\":" + json_string(f[i].detail) +
             ",\"fix\":" + json_string(f[i].fix) + "}";
    return s + "]}\n";
}

}  // namespace mta::dnscheck
