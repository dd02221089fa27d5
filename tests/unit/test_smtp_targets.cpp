// Unit tests for smtp-client/smtp_targets: MX -> A/AAAA resolution through a fake DnsClient.
#include <doctest/doctest.h>

#include <deque>
#include <map>
#include <optional>

#include "smtp-client/smtp_targets.h"

using namespace mta;
using namespace mta::smtp;

namespace {

// Answers from a table, queued and delivered by run() (never inside query(), as the contract says).
class FakeDns : public DnsClient {
public:
    std::map<std::pair<std::string, uint16_t>, DnsAnswer> table;
    std::deque<std::pair<Callback, DnsAnswer>> queued;
    std::vector<std::pair<std::string, uint16_t>> asked;
    bool up = true;

    void query(const std::string& name, uint16_t qtype, Callback cb) override {
        asked.push_back({name, qtype});
        auto it = table.find({name, qtype});
        DnsAnswer a;
        if (it != table.end()) a = it->second;
        else a.rcode = kRcodeNoError;  // NODATA
        queued.push_back({std::move(cb), a});
    }
    bool available() const override { return up; }
    void run() {
        while (!queued.empty()) {
            auto [cb, a] = std::move(queued.front());
            queued.pop_front();
            cb(a);
        }
    }
    void set(const std::string& n, uint16_t t, std::vector<std::string> recs, uint64_t rcode = 0) {
        DnsAnswer a;
        a.rcode = rcode;
        a.records = std::move(recs);
        table[{n, t}] = a;
    }
};

struct Fixture {
    FakeDns dns;
    Config cfg;
    std::optional<TargetResult> result;
    Fixture() {
        cfg.hostname = "me.example";
        cfg.smtp_listen = {{"127.0.0.1", 2525}};
    }
    TargetResult resolve(const std::string& host, bool mx = true, uint16_t port = 25) {
        uint32_t n = 0;
        TargetResolver r(dns, cfg, [&n] { return n++; });
        Destination d;
        d.mx = mx;
        d.host = host;
        d.port = port;
        result.reset();
        r.start(d, [this](TargetResult t) { result = std::move(t); });
        dns.run();
        REQUIRE(result);
        return *result;
    }
};

std::vector<std::string> labels(const TargetResult& r) {
    std::vector<std::string> v;
    for (auto& t : r.targets) v.push_back(t.label());
    return v;
}

}  // namespace

TEST_CASE("smtp targets: MX by preference, IPv4 before IPv6, capped") {
    Fixture f;
    f.dns.set("example.com", kQtypeMx, {"20 mx2.example.com", "10 mx1.example.com"});
    f.dns.set("mx1.example.com", kQtypeA, {"192.0.2.1"});
    f.dns.set("mx1.example.com", kQtypeAaaa, {"2001:db8::1"});
    f.dns.set("mx2.example.com", kQtypeA, {"192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5"});
    auto r = f.resolve("example.com");
    CHECK(labels(r) == std::vector<std::string>{"mx1.example.com[192.0.2.1]:25", "mx1.example.com[2001:db8::1]:25",
                                                "mx2.example.com[192.0.2.2]:25", "mx2.example.com[192.0.2.3]:25",
                                                "mx2.example.com[192.0.2.4]:25"});
}

TEST_CASE("smtp targets: DNS failures map to bounce or defer") {
    Fixture f;
    f.dns.set("nx.example", kQtypeMx, {}, kRcodeNxdomain);
    auto r = f.resolve("nx.example");
    CHECK(r.targets.empty());
    CHECK(r.status == ipc::DeliveryStatus::bounced);
    CHECK(r.text.rfind("5.1.2 ", 0) == 0);

    f.dns.set("sf.example", kQtypeMx, {}, kRcodeServfail);
    r = f.resolve("sf.example");
    CHECK(r.status == ipc::DeliveryStatus::deferred);
    CHECK(r.text.rfind("4.4.3 ", 0) == 0);

    f.dns.set("null.example", kQtypeMx, {"0 ."});
    r = f.resolve("null.example");
    CHECK(r.status == ipc::DeliveryStatus::bounced);
    CHECK(r.text == "5.1.10 Domain does not accept mail (null MX)");

    f.dns.set("loop.example", kQtypeMx, {"10 me.example"});
    r = f.resolve("loop.example");
    CHECK(r.status == ipc::DeliveryStatus::bounced);
    CHECK(r.text == "5.4.6 mail for loop.example loops back to myself");

    f.dns.set("junk.example", kQtypeMx, {"junk", "also junk"});
    r = f.resolve("junk.example");
    CHECK(r.status == ipc::DeliveryStatus::deferred);
}

TEST_CASE("smtp targets: no MX falls back to the domain's own addresses") {
    Fixture f;
    f.dns.set("plain.example", kQtypeA, {"192.0.2.9"});
    auto r = f.resolve("plain.example");
    CHECK(labels(r) == std::vector<std::string>{"plain.example[192.0.2.9]:25"});

    r = f.resolve("empty.example");  // no MX and no addresses
    CHECK(r.status == ipc::DeliveryStatus::bounced);
    CHECK(r.text.rfind("5.4.4 ", 0) == 0);
}

TEST_CASE("smtp targets: address lookups failing temporarily defer") {
    Fixture f;
    f.dns.set("t.example", kQtypeMx, {"10 mx.t.example"});
    f.dns.set("mx.t.example", kQtypeA, {}, kRcodeTimeout);
    auto r = f.resolve("t.example");
    CHECK(r.status == ipc::DeliveryStatus::deferred);
    CHECK(r.text.find("type=A") != std::string::npos);
}

TEST_CASE("smtp targets: our own listening address is a loop") {
    Fixture f;
    f.dns.set("self.example", kQtypeMx, {"10 mx.self.example"});
    f.dns.set("mx.self.example", kQtypeA, {"127.0.0.1"});
    auto r = f.resolve("self.example", true, 2525);
    CHECK(r.status == ipc::DeliveryStatus::bounced);
    CHECK(r.text.rfind("5.4.6 ", 0) == 0);
}

TEST_CASE("smtp targets: literals and relay hosts") {
    Fixture f;
    auto r = f.resolve("192.0.2.7", false, 2526);
    CHECK(labels(r) == std::vector<std::string>{"192.0.2.7[192.0.2.7]:2526"});
    CHECK(f.dns.asked.empty());

    f.dns.set("relay.example", kQtypeAaaa, {"2001:db8::25"});
    r = f.resolve("relay.example", false, 587);
    CHECK(labels(r) == std::vector<std::string>{"relay.example[2001:db8::25]:587"});
    for (auto& q : f.dns.asked) CHECK(q.second != kQtypeMx);
}

TEST_CASE("smtp targets: malformed address records are skipped") {
    Fixture f;
    f.dns.set("m.example", kQtypeA, {"not-an-ip", "192.0.2.1"});
    auto r = f.resolve("m.example", false);
    CHECK(labels(r) == std::vector<std::string>{"m.example[192.0.2.1]:25"});
}

TEST_CASE("smtp targets: DNSSEC status for DANE (MX and address answers all secure)") {
    Fixture f;
    auto secure = uint64_t(ipc::DnssecStatus::secure);
    f.dns.set("example.com", kQtypeMx, {"10 mx1.example.com", "20 mx2.example.com"});
    f.dns.set("mx1.example.com", kQtypeA, {"192.0.2.1"});
    f.dns.set("mx2.example.com", kQtypeA, {"192.0.2.2"});
    f.dns.table[{"example.com", kQtypeMx}].dnssec = secure;
    for (auto h : {"mx1.example.com", "mx2.example.com"})
        for (uint16_t q : {kQtypeA, kQtypeAaaa}) f.dns.table[{h, q}].dnssec = secure;
    f.dns.table[{"mx2.example.com", kQtypeAaaa}].dnssec = 0;  // one insecure answer taints the host
    auto r = f.resolve("example.com");
    REQUIRE(r.targets.size() == 2);
    CHECK(r.targets[0].dnssec_secure);
    CHECK_FALSE(r.targets[1].dnssec_secure);

    f.dns.table[{"example.com", kQtypeMx}].dnssec = 0;  // insecure MX: no DANE anywhere
    r = f.resolve("example.com");
    REQUIRE(r.targets.size() == 2);
    CHECK_FALSE(r.targets[0].dnssec_secure);

    r = f.resolve("192.0.2.9", false);  // literals never
    REQUIRE(r.targets.size() == 1);
    CHECK_FALSE(r.targets[0].dnssec_secure);
}
