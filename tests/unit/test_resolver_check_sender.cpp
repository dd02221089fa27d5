// Unit tests for resolver/mtadns/check_sender: the findings for DNS answers given by a table (the
// integration suite runs the same checks against NSD through the real resolver).
#include <doctest/doctest.h>

#include <map>
#include <string>
#include <utility>

#include "common/mta_sts.h"
#include "resolver/mtadns/check_sender.h"

using namespace mta;
using namespace mta::dnscheck;

namespace {

struct FakeDns {
    std::map<std::pair<std::string, int>, ResolveAnswer> answers;
    bool reachable = true;
    void set(const std::string& name, int qtype, std::vector<std::string> records, long rcode = 0) {
        ResolveAnswer a;
        a.rcode = rcode;
        a.records = std::move(records);
        answers[{name, qtype}] = a;
    }
    Resolve fn() {
        return [this](const std::string& name, int qtype, ResolveAnswer& a, std::string& err) {
            if (!reachable) { err = "mtad is not running"; return false; }
            auto it = answers.find({name, qtype});
            a = ResolveAnswer{};
            a.rcode = 3;  // NXDOMAIN for anything not in the table
            if (it != answers.end()) a = it->second;
            return true;
        };
    }
};

const Finding* find(const std::vector<Finding>& f, const std::string& check) {
    for (auto& x : f)
        if (x.check == check) return &x;
    return nullptr;
}

}  // namespace

TEST_CASE("check-sender: MX findings") {
    FakeDns dns;
    SenderInput in;
    in.domain = "example.test";
    in.helo = "mx.example.test";
    auto f = check_sender(in, dns.fn());
    REQUIRE(find(f, "mx"));
    CHECK(find(f, "mx")->status == "FAIL");  // NXDOMAIN
    dns.set("example.test", 15, {"0 ."});
    f = check_sender(in, dns.fn());
    CHECK(find(f, "mx")->status == "FAIL");
    CHECK(find(f, "mx")->detail.find("null MX") != std::string::npos);
    dns.set("example.test", 15, {});
    CHECK(find(check_sender(in, dns.fn()), "mx")->status == "WARN");
    dns.set("example.test", 15, {}, 2);  // SERVFAIL: not the domain's fault
    CHECK(find(check_sender(in, dns.fn()), "mx")->status == "WARN");
    dns.set("example.test", 15, {"10 mx.example.test"});
    CHECK(find(check_sender(in, dns.fn()), "mx")->status == "OK");
    // No source address: one WARN that says how to give one, no per-address checks.
    f = check_sender(in, dns.fn());
    CHECK(find(f, "source")->status == "WARN");
    CHECK_FALSE(find(f, "rdns"));
    CHECK_FALSE(find(f, "spf"));
}

TEST_CASE("check-sender: DMARC, MTA-STS and TLS-RPT records") {
    FakeDns dns;
    SenderInput in;
    in.domain = "mail.example.test";
    in.org_domain = "example.test";
    dns.set("mail.example.test", 15, {"10 mx.example.test"});
    auto dmarc = [&] { return *find(check_sender(in, dns.fn()), "dmarc"); };
    CHECK(dmarc().status == "FAIL");
    dns.set("_dmarc.example.test", 16, {"v=DMARC1; p=reject; rua=mailto:d@example.test"});
    CHECK(dmarc().status == "OK");  // the organizational domain's record
    CHECK(dmarc().detail.find("organizational") != std::string::npos);
    dns.set("_dmarc.mail.example.test", 16, {"v=DMARC1; p=none; rua=mailto:d@example.test"});
    CHECK(dmarc().status == "WARN");
    dns.set("_dmarc.mail.example.test", 16, {"v=DMARC1; p=quarantine"});
    CHECK(dmarc().status == "WARN");  // no rua
    dns.set("_dmarc.mail.example.test", 16, {"v=DMARC1; p=reject; rua=mailto:a@x.test", "v=DMARC1; p=none"});
    CHECK(dmarc().status == "FAIL");  // two records
    dns.set("_dmarc.mail.example.test", 16, {"v=DMARC1; p=maybe"});
    CHECK(dmarc().status == "FAIL");
    dns.set("_dmarc.mail.example.test", 16, {"some other TXT", "v=DMARC1; p=reject; rua=mailto:a@x.test"});
    CHECK(dmarc().status == "OK");  // unrelated TXT records at the name do not count

    auto f = check_sender(in, dns.fn());
    CHECK(find(f, "mta-sts")->status == "WARN");
    CHECK(find(f, "tls-rpt")->status == "WARN");
    dns.set("_mta-sts.mail.example.test", 16, {"v=STSv1;"});
    dns.set("_smtp._tls.mail.example.test", 16, {"v=TLSRPTv1;"});
    f = check_sender(in, dns.fn());
    CHECK(find(f, "mta-sts")->status == "FAIL");  // no id=
    CHECK(find(f, "tls-rpt")->status == "FAIL");  // no rua=
    dns.set("_mta-sts.mail.example.test", 16, {"v=STSv1; id=2026"});
    dns.set("_smtp._tls.mail.example.test", 16, {"v=TLSRPTv1; rua=mailto:t@example.test"});
    f = check_sender(in, dns.fn());
    CHECK(find(f, "tls-rpt")->status == "OK");
    // The record alone: the policy file must be had, as a sender's resolver would fetch it.
    CHECK(find(f, "mta-sts")->status == "FAIL");
    CHECK(find(f, "mta-sts")->detail.find("no policy could be had") != std::string::npos);
    sts::Lookup l;
    l.found = true;
    l.id = "2026";
    l.source = "fetched";
    l.policy.mode = sts::Mode::testing;
    l.policy.max_age = 86400;
    l.policy.mx = {"*.example.test"};
    dns.set("mail.example.test", sts::kQtypeMtaSts, sts::encode_lookup(l));
    CHECK(find(check_sender(in, dns.fn()), "mta-sts")->status == "WARN");  // testing
    l.policy.mode = sts::Mode::enforce;
    dns.set("mail.example.test", sts::kQtypeMtaSts, sts::encode_lookup(l));
    CHECK(find(check_sender(in, dns.fn()), "mta-sts")->status == "OK");
    dns.set("mail.example.test", 15, {"10 mx.example.test", "20 backup.elsewhere.test"});
    f = check_sender(in, dns.fn());
    CHECK(find(f, "mta-sts")->status == "FAIL");  // an MX the enforced policy does not list
    CHECK(find(f, "mta-sts")->detail.find("backup.elsewhere.test") != std::string::npos);
}

TEST_CASE("check-sender: DKIM keys as dkim_keys has them") {
    FakeDns dns;
    SenderInput in;
    in.domain = "example.test";
    dns.set("example.test", 15, {"10 mx.example.test"});
    CHECK(find(check_sender(in, dns.fn()), "dkim")->status == "FAIL");  // no key: unsigned mail
    in.dkim_problem = "/etc/mta/dkim_keys.lmdb: Permission denied";
    CHECK(find(check_sender(in, dns.fn()), "dkim")->status == "WARN");
    in.dkim_problem.clear();
    const std::string rec = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    const std::string other = "v=DKIM1; k=ed25519; p=2szB42YRpvryjtE7GoDJlloZX/EpT1HkjhNjoAiasnE=";
    in.dkim = {{"example.test", "s1", rec}};
    auto f = check_sender(in, dns.fn());
    CHECK(find(f, "dkim")->status == "FAIL");
    CHECK(find(f, "dkim")->fix.find("s1._domainkey.example.test. IN TXT") != std::string::npos);
    dns.set("s1._domainkey.example.test", 16, {other});
    CHECK(find(check_sender(in, dns.fn()), "dkim")->detail == "a different key is published");
    dns.set("s1._domainkey.example.test", 16, {rec});
    CHECK(find(check_sender(in, dns.fn()), "dkim")->status == "OK");
    dns.set("s1._domainkey.example.test", 16, {rec, other});
    CHECK(find(check_sender(in, dns.fn()), "dkim")->status == "WARN");
}

TEST_CASE("check-sender: source addresses, SPF and block lists") {
    FakeDns dns;
    SenderInput in;
    in.domain = "example.test";
    in.helo = "out.example.test";
    in.addresses = {"192.0.2.10", "not-an-ip"};
    std::string err;
    REQUIRE(parse_dnsbl_zones("bl.example wl.example*-1", in.dnsbl, err));
    dns.set("example.test", 15, {"10 mx.example.test"});
    dns.set("example.test", 16, {"v=spf1 ip4:192.0.2.0/24 -all"});
    dns.set("10.2.0.192.in-addr.arpa", 12, {"out.example.test."});
    dns.set("out.example.test", 1, {"192.0.2.10"});
    dns.set("10.2.0.192.bl.example", 1, {"127.0.0.2"});
    auto f = check_sender(in, dns.fn());
    CHECK(find(f, "rdns")->status == "OK");
    CHECK(find(f, "fcrdns")->status == "OK");
    CHECK(find(f, "helo")->status == "OK");
    CHECK(find(f, "spf")->status == "OK");
    CHECK(find(f, "dnsbl")->status == "FAIL");
    CHECK(find(f, "dnsbl")->detail == "listed on bl.example");
    CHECK(find(f, "source")->status == "FAIL");  // not-an-ip
    CHECK(any_fail(f));
    dns.set("example.test", 16, {"v=spf1 -all"});
    CHECK(find(check_sender(in, dns.fn()), "spf")->status == "FAIL");
    dns.set("example.test", 16, {"v=spf1 ?all"});
    CHECK(find(check_sender(in, dns.fn()), "spf")->status == "WARN");
    dns.set("example.test", 16, {"v=spf1 ip4:192.0.2.0/33 -all"});
    CHECK(find(check_sender(in, dns.fn()), "spf")->status == "FAIL");  // permerror
    // The text and JSON forms agree on what failed.
    std::string text = format_text(f), json = format_json("example.test", f);
    CHECK(text.find("FAIL dnsbl 192.0.2.10: listed on bl.example") != std::string::npos);
    CHECK(text.find("      fix: ") != std::string::npos);
    CHECK(json.find("\"ready\":false") != std::string::npos);
    CHECK(json.find("\"check\":\"dnsbl\"") != std::string::npos);
}

TEST_CASE("check-sender: a source address with its own helo= is checked against that name") {
    FakeDns dns;
    SenderInput in;
    in.domain = "example.test";
    in.helo = "mx.example.test";
    in.addresses = {"192.0.2.11", "192.0.2.12"};
    in.helos = {{"192.0.2.11", "out11.example.test"}, {"192.0.2.12", "out11.example.test"}};
    dns.set("example.test", 15, {"10 mx.example.test"});
    dns.set("example.test", 16, {"v=spf1 ip4:192.0.2.0/24 -all"});
    dns.set("11.2.0.192.in-addr.arpa", 12, {"out11.example.test."});
    dns.set("out11.example.test", 1, {"192.0.2.11"});
    dns.set("12.2.0.192.in-addr.arpa", 12, {"out12.example.test."});
    dns.set("out12.example.test", 1, {"192.0.2.12"});
    auto f = check_sender(in, dns.fn());
    std::vector<const Finding*> helo;
    for (auto& x : f)
        if (x.check == "helo") helo.push_back(&x);
    REQUIRE(helo.size() == 2);
    CHECK(helo[0]->status == "OK");  // not smtp_helo_name: its own
    CHECK(helo[1]->status == "WARN");
    CHECK(helo[1]->fix == "set helo=out12.example.test for 192.0.2.12 in source_addresses (or change the PTR)");
}
