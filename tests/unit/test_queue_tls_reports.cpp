// TlsReports: counts from mta-smtp's results into the period's aggregate, the stored form, the day's end,
// and the reports written into maildrop/ as local mail from the null sender.
#include <doctest/doctest.h>

#include <dirent.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "common/wire/maildrop.h"
#include "queue-manager/tls_reports.h"

using namespace mta;
using namespace mta::queue;

namespace {

constexpr uint64_t kDay = 86400;

std::string one_result(const std::string& domain, bool success) {
    tlsrpt::Aggregate a;
    tlsrpt::Result r;
    r.policy_type = "tlsa";
    r.policy_domain = domain;
    r.policy_strings = {"3 1 1 00ff"};
    r.success = success;
    if (!success) {
        r.result_type = "validation-failure";
        r.sending_mta_ip = "192.0.2.1";
        r.receiving_mx_hostname = "mx." + domain;
        r.receiving_ip = "192.0.2.9";
    }
    a.add(r);
    return a.encode();
}

Config config() {
    Config c;
    c.hostname = "mx.example.org";
    c.tlsrpt_reports = true;
    return c;
}

std::vector<std::string> files(const std::string& dir) {
    std::vector<std::string> out;
    DIR* d = opendir(dir.c_str());
    while (dirent* e = d ? readdir(d) : nullptr)
        if (e->d_name[0] != '.') out.push_back(dir + "/" + e->d_name);
    if (d) closedir(d);
    return out;
}

}  // namespace

TEST_CASE("tls reports: results add up per policy domain; bad counts are refused; a report per domain") {
    char tmpl[] = "/tmp/tlsrpt-test.XXXXXX";
    REQUIRE(mkdtemp(tmpl));
    std::string dir = tmpl;
    TlsReports t;
    t.configure(config());
    t.set_maildrop(dir);
    uint64_t now = 20000 * kDay + 3600;
    std::string err;
    CHECK(t.add(one_result("a.example", true), "tls@a.example", now, err));
    CHECK(t.add(one_result("a.example", false), "tls@a.example", now + 1, err));
    CHECK(t.add(one_result("b.example", true), "x@b.example,https://no,y@b.example", now + 2, err));
    CHECK_FALSE(t.add("garbage", "tls@a.example", now, err));
    CHECK_FALSE(t.add(one_result("c.example", true), "not an address", now, err));
    std::string json = t.list_json(now + 3);
    CHECK(json.find("\"domain\":\"a.example\",\"rua\":[\"tls@a.example\"]") != std::string::npos);
    CHECK(json.find("\"rua\":[\"x@b.example\",\"y@b.example\"]") != std::string::npos);
    CHECK(json.find("c.example") == std::string::npos);
    CHECK(t.list_text(now).find("tlsa: 1 successful, 1 failed sessions") != std::string::npos);

    // Stored and loaded again (a restart) it is the same period.
    TlsReports back;
    back.configure(config());
    back.set_maildrop(dir);
    for (auto& [k, v] : t.dirty()) back.load(k, v);
    CHECK(t.dirty().empty());
    CHECK(back.list_json(now + 3) == json);

    CHECK(back.tick(now + 60) == "");                       // the same day: nothing yet
    CHECK(back.tick((20000 + 1) * kDay + 5) == "ok: 2 TLS reports queued\n");
    CHECK(back.list_json(now).find("\"domains\":[]") != std::string::npos);
    auto made = files(dir);
    REQUIRE(made.size() == 2);
    bool seen_b = false;
    for (auto& f : made) {
        CHECK(f.find("/m") != std::string::npos);  // renamed into place, no temporary left
        std::ifstream in(f, std::ios::binary);
        std::stringstream ss;
        ss << in.rdbuf();
        wire::Maildrop md;
        REQUIRE(wire::parse_maildrop(ss.str(), md, err));
        CHECK(md.sender.empty());
        CHECK(md.uid == getuid());
        CHECK(md.body.find("Content-Type: multipart/report; report-type=\"tlsrpt\"") != std::string::npos);
        CHECK(md.body.find("From: <postmaster@mx.example.org>") != std::string::npos);
        if (md.body.find("TLS-Report-Domain: b.example") != std::string::npos) {
            seen_b = true;
            CHECK(md.rcpts == std::vector<std::string>{"x@b.example", "y@b.example"});
        }
        unlink(f.c_str());
    }
    CHECK(seen_b);
    CHECK(back.send(now) == "no TLS results to report\n");
    rmdir(dir.c_str());
}

TEST_CASE("tls reports: off, counts from mta-smtp are dropped; damaged stored state is ignored") {
    TlsReports t;
    Config c = config();
    c.tlsrpt_reports = false;
    t.configure(c);
    std::string err;
    CHECK(t.add(one_result("a.example", true), "tls@a.example", 100, err));
    CHECK(t.list_json(100).find("\"enabled\":false") != std::string::npos);
    CHECK(t.list_json(100).find("a.example") == std::string::npos);
    t.load("tlsrpt/period", "12x " + one_result("a.example", true));
    t.load("tlsrpt/period", "12 garbage");
    t.load("tlsrpt/period", "");
    CHECK(t.list_json(100).find("a.example") == std::string::npos);
}
