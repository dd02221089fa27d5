// Unit tests for common/tlsrpt: aggregation and its caps, the storage form against truncation and
// corruption, the RFC 8460 JSON and message, gzip (checked with zlib's inflate), the _smtp._tls record,
// and the whole message read back by Python's email, gzip and json (tlsrpt_check.py).
#include <doctest/doctest.h>

#include <zlib.h>

#include <sys/wait.h>

#include <cstdio>
#include <string>
#include <vector>

#include "common/tlsrpt.h"

using namespace mta::tlsrpt;

namespace {

Result success(const std::string& type, const std::string& domain, std::vector<std::string> strings = {},
               std::vector<std::string> mx = {}) {
    Result r;
    r.policy_type = type;
    r.policy_domain = domain;
    r.policy_strings = std::move(strings);
    r.mx_host_patterns = std::move(mx);
    r.success = true;
    return r;
}

Result failure(const std::string& type, const std::string& domain, const std::string& result_type,
               const std::string& mx_host = "mx1.example.net", const std::string& receiving_ip = "192.0.2.25") {
    Result r = success(type, domain);
    r.success = false;
    r.result_type = result_type;
    r.sending_mta_ip = "198.51.100.7";
    r.receiving_mx_hostname = mx_host;
    r.receiving_ip = receiving_ip;
    return r;
}

const std::vector<std::string> kSts = {"version: STSv1", "mode: enforce", "mx: *.mail.a.example", "max_age: 86400"};

// Two domains, three policies, failures of several kinds: the aggregate most tests start from.
Aggregate sample() {
    Aggregate a;
    a.add(success("sts", "a.example", kSts, {"*.mail.a.example"}), 40);
    Result expired = failure("sts", "a.example", "certificate-expired", "mx1.mail.a.example");
    expired.policy_strings = kSts;
    expired.mx_host_patterns = {"*.mail.a.example"};
    expired.receiving_mx_helo = "mx1.mail.a.example";
    a.add(expired, 2);
    a.add(expired);
    Result untrusted = expired;
    untrusted.result_type = "certificate-not-trusted";
    untrusted.failure_reason_code = "X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN";
    a.add(untrusted);
    a.add(success("tlsa", "a.example", {"3 1 1 0123456789abcdef"}), 5);
    a.add(success("no-policy-found", "B.Example"), 7);
    a.add(failure("no-policy-found", "b.example", "starttls-not-supported", "mx.b.example", "2001:db8::25"));
    return a;
}

std::string inflate_gzip(const std::string& gz) {
    z_stream zs{};
    REQUIRE(inflateInit2(&zs, 15 + 16) == Z_OK);
    std::string out;
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(gz.data()));
    zs.avail_in = uInt(gz.size());
    char buf[4096];
    int rc;
    do {
        zs.next_out = reinterpret_cast<Bytef*>(buf);
        zs.avail_out = sizeof buf;
        rc = inflate(&zs, Z_NO_FLUSH);
        out.append(buf, sizeof buf - zs.avail_out);
    } while (rc == Z_OK);
    inflateEnd(&zs);
    CHECK(rc == Z_STREAM_END);
    CHECK(zs.avail_in == 0);
    return out;
}

// Storage-form pieces, to build inputs whose checksum is right but whose structure is not.
std::string v(uint64_t n) {
    std::string out;
    while (n >= 0x80) {
        out += char((n & 0x7f) | 0x80);
        n >>= 7;
    }
    return out + char(n);
}
std::string s(const std::string& text) { return v(text.size()) + text; }
std::string seal(const std::string& payload, uint8_t version = 1) {
    std::string out = std::string(1, char(version)) + payload;
    uint32_t crc = uint32_t(crc32_z(0, reinterpret_cast<const Bytef*>(out.data()), out.size()));
    for (int shift = 24; shift >= 0; shift -= 8) out += char((crc >> shift) & 0xff);
    return out;
}
std::string detail(const std::string& type, uint64_t count, const std::string& ip = "192.0.2.1") {
    return s(type) + s("") + s("mx.example") + s("") + s(ip) + s("") + s("") + v(count);
}
// One policy: type, no strings, no patterns, counts, details.
std::string policy(const std::string& type, uint64_t ok, uint64_t failed, const std::vector<std::string>& details) {
    std::string out = s(type) + v(0) + v(0) + v(ok) + v(failed) + v(details.size());
    for (auto& d : details) out += d;
    return out;
}

bool decodes(const std::string& in, std::string* why = nullptr) {
    Aggregate a;
    std::string err;
    bool ok = Aggregate::decode(in, a, err);
    if (why) *why = err;
    if (!ok) CHECK(!err.empty());
    return ok;
}

ReportMeta meta() {
    ReportMeta m;
    m.organization = "Example Sender Org";
    m.contact = "tlsrpt@sender.example";
    m.report_id = "2026-01-31T00:00:00Z_a.example@sender.example";
    m.start = 1769817600;  // 2026-01-31T00:00:00Z
    m.end = 1769903999;    // 2026-01-31T23:59:59Z
    return m;
}

MessageMeta message_meta() {
    MessageMeta mm;
    mm.from = "tlsrpt@sender.example";
    mm.to = "reports@a.example";
    mm.submitter = "sender.example";
    mm.message_id = "tlsrpt.1769903999.a.example@sender.example";
    return mm;
}

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

}  // namespace

TEST_CASE("tlsrpt: the result and policy types of RFC 8460") {
    for (const char* t : {"starttls-not-supported", "certificate-host-mismatch", "certificate-expired",
                          "certificate-not-trusted", "validation-failure", "tlsa-invalid", "dnssec-invalid",
                          "dane-required", "sts-policy-fetch-error", "sts-policy-invalid", "sts-webpki-invalid"})
        CHECK(valid_result_type(t));
    for (const char* t : {"", "Certificate-Expired", "certificate-expired ", "sts-policy-fetch", "success"})
        CHECK_FALSE(valid_result_type(t));
    CHECK(valid_policy_type("sts"));
    CHECK(valid_policy_type("tlsa"));
    CHECK(valid_policy_type("no-policy-found"));
    CHECK_FALSE(valid_policy_type("mta-sts"));
}

TEST_CASE("tlsrpt: successes and failures of two domains and several policies") {
    Aggregate a = sample();
    CHECK_FALSE(a.empty());
    CHECK(a.domains() == std::vector<std::string>{"a.example", "b.example"});

    auto& pa = a.policies("a.example");
    REQUIRE(pa.size() == 2);
    CHECK(pa[0].type == "sts");
    CHECK(pa[0].strings == kSts);
    CHECK(pa[0].mx_host_patterns == std::vector<std::string>{"*.mail.a.example"});
    CHECK(pa[0].successes == 40);
    CHECK(pa[0].failures == 4);
    REQUIRE(pa[0].details.size() == 2);
    CHECK(pa[0].details[0].result_type == "certificate-expired");
    CHECK(pa[0].details[0].count == 3);  // 2 + 1 in one group
    CHECK(pa[0].details[0].receiving_mx_helo == "mx1.mail.a.example");
    CHECK(pa[0].details[1].result_type == "certificate-not-trusted");
    CHECK(pa[0].details[1].failure_reason_code == "X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN");
    CHECK(pa[1].type == "tlsa");
    CHECK(pa[1].successes == 5);
    CHECK(pa[1].failures == 0);

    auto& pb = a.policies("b.example");  // "B.Example" was lower-cased
    REQUIRE(pb.size() == 1);
    CHECK(pb[0].domain == "b.example");
    CHECK(pb[0].successes == 7);
    CHECK(pb[0].failures == 1);
    REQUIRE(pb[0].details.size() == 1);
    CHECK(pb[0].details[0].receiving_ip == "2001:db8::25");
    CHECK(a.policies("c.example").empty());

    // The same policy with other strings is another policy; other failure fields another group.
    a.add(success("sts", "a.example", {"version: STSv1", "mode: testing"}, {"*.mail.a.example"}));
    CHECK(a.policies("a.example").size() == 3);
    a.add(failure("no-policy-found", "b.example", "starttls-not-supported", "mx.b.example", "192.0.2.99"));
    CHECK(a.policies("b.example")[0].details.size() == 2);

    // No count, no domain: nothing. Unknown types fall back to the catch-alls.
    Aggregate before = a;
    a.add(success("sts", "a.example", kSts), 0);
    a.add(success("sts", ""));
    CHECK(a == before);
    a.add(failure("dane", "c.example", "certificate-revoked"));
    REQUIRE(a.policies("c.example").size() == 1);
    CHECK(a.policies("c.example")[0].type == "no-policy-found");
    CHECK(a.policies("c.example")[0].details[0].result_type == "validation-failure");
    CHECK(a.policies("c.example")[0].details[0].failure_reason_code == "certificate-revoked");
}

TEST_CASE("tlsrpt: at most 100 policies per domain and 100 failure groups per policy") {
    Aggregate a;
    for (int i = 0; i < 150; i++) a.add(success("tlsa", "a.example", {"3 1 1 " + std::to_string(i)}));
    CHECK(a.policies("a.example").size() == kMaxPoliciesPerDomain);
    a.add(success("tlsa", "a.example", {"3 1 1 0"}), 9);  // an existing policy still counts
    CHECK(a.policies("a.example")[0].successes == 10);
    a.add(success("sts", "b.example"));  // the cap is per domain
    CHECK(a.policies("b.example").size() == 1);

    Aggregate f;
    for (int i = 0; i < 130; i++)
        f.add(failure("sts", "c.example", "certificate-expired", "mx.c.example", "192.0.2." + std::to_string(i)));
    f.add(failure("sts", "c.example", "certificate-expired", "mx.c.example", "192.0.2.0"), 4);
    auto& p = f.policies("c.example")[0];
    CHECK(p.details.size() == kMaxDetailsPerPolicy);
    CHECK(p.failures == 134);  // every failure is in the total
    CHECK(p.details[0].count == 5);
    uint64_t grouped = 0;
    for (auto& d : p.details) grouped += d.count;
    CHECK(grouped == 104);

    // Long fields are cut, counters saturate.
    Aggregate big;
    Result r = failure("sts", "d.example", "validation-failure");
    r.failure_reason_code = std::string(5000, 'x');
    big.add(r, UINT64_MAX - 1);
    big.add(r, 5);
    CHECK(big.policies("d.example")[0].failures == UINT64_MAX);
    CHECK(big.policies("d.example")[0].details[0].count == UINT64_MAX);
    CHECK(big.policies("d.example")[0].details[0].failure_reason_code.size() == kMaxField);
    Aggregate round;
    std::string err;
    CHECK(Aggregate::decode(big.encode(), round, err));
    CHECK(round == big);
}

TEST_CASE("tlsrpt: merge adds up, erase forgets a domain") {
    Aggregate a = sample(), b;
    b.add(success("no-policy-found", "b.example"), 3);
    b.add(failure("no-policy-found", "b.example", "starttls-not-supported", "mx.b.example", "2001:db8::25"), 2);
    b.add(success("sts", "e.example"));
    a.merge(b);
    CHECK(a.domains() == std::vector<std::string>{"a.example", "b.example", "e.example"});
    auto& pb = a.policies("b.example")[0];
    CHECK(pb.successes == 10);
    CHECK(pb.failures == 3);
    REQUIRE(pb.details.size() == 1);
    CHECK(pb.details[0].count == 3);

    Aggregate twice = sample();
    twice.merge(twice);
    CHECK(twice.policies("a.example")[0].successes == 80);
    CHECK(twice.policies("a.example")[0].details[0].count == 6);

    a.erase("b.example");
    a.erase("nowhere.example");
    CHECK(a.domains() == std::vector<std::string>{"a.example", "e.example"});
    a.erase("a.example");
    a.erase("e.example");
    CHECK(a.empty());
}

TEST_CASE("tlsrpt: encode and decode round trip") {
    for (const Aggregate& a : {Aggregate(), sample()}) {
        std::string enc = a.encode();
        CHECK(static_cast<uint8_t>(enc[0]) == 1);
        Aggregate back;
        back.add(success("sts", "junk.example"));  // replaced, not merged into
        std::string err;
        REQUIRE(Aggregate::decode(enc, back, err));
        CHECK(err.empty());
        CHECK(back == a);
        CHECK(back.encode() == enc);
    }
}

TEST_CASE("tlsrpt: decode rejects every truncation and corrupted bytes") {
    const Aggregate a = sample();
    const std::string enc = a.encode();
    for (std::size_t n = 0; n < enc.size(); n++) {
        CAPTURE(n);
        CHECK_FALSE(decodes(enc.substr(0, n)));
    }
    for (std::size_t i = 0; i < enc.size(); i++)
        for (uint8_t mask : {0x01, 0x80, 0xff}) {
            std::string bad = enc;
            bad[i] = char(bad[i] ^ mask);
            CAPTURE(i);
            CHECK_FALSE(decodes(bad));
        }
    CHECK_FALSE(decodes(enc + '\0'));

    Aggregate out = a;  // untouched on error
    std::string err;
    CHECK_FALSE(Aggregate::decode(enc.substr(0, enc.size() / 2), out, err));
    CHECK(out == a);
}

TEST_CASE("tlsrpt: decode checks the structure behind a valid checksum") {
    const std::string one = policy("sts", 1, 2, {detail("certificate-expired", 2)});
    std::string why;
    REQUIRE(decodes(seal(v(1) + s("a.example") + v(1) + one)));

    struct Case {
        std::string in, err;
    };
    const Case cases[] = {
        {seal(v(0), 2), "unknown format version 2"},
        {seal(v(0)) + "x", "checksum mismatch"},
        {seal(v(0) + "x"), "trailing bytes"},
        {seal(v(3)), "truncated"},  // three domains announced, none there
        {seal(std::string(10, char(0xff)) + char(0x01)), "number overflows 64 bits"},
        {seal(std::string(9, char(0xff)) + char(0x02)), "number overflows 64 bits"},
        {seal(std::string("\x80\x00", 2)), "non-minimal number"},
        {seal(v(1) + v(500) + "a.example"), "string too long"},
        {seal(v(1) + v(20) + "a.example"), "truncated"},
        {seal(v(1) + s("") + v(1) + one), "bad domain"},
        {seal(v(1) + s("A.example") + v(1) + one), "bad domain"},
        {seal(v(2) + s("b.example") + v(1) + one + s("a.example") + v(1) + one), "domains out of order"},
        {seal(v(2) + s("a.example") + v(1) + one + s("a.example") + v(1) + one), "domains out of order"},
        {seal(v(1) + s("a.example") + v(0)), "domain without policies"},
        {seal(v(1) + s("a.example") + v(101)), "too many policies"},
        {seal(v(1) + s("a.example") + v(2) + one + one), "duplicate policy"},
        {seal(v(1) + s("a.example") + v(1) + policy("dane", 1, 0, {})), "unknown policy type"},
        {seal(v(1) + s("a.example") + v(1) + policy("sts", 0, 0, {})), "policy without sessions"},
        {seal(v(1) + s("a.example") + v(1) + policy("sts", 0, 1, {detail("certificate-expired", 2)})),
         "failure groups exceed the failure total"},
        {seal(v(1) + s("a.example") + v(1) +
              policy("sts", 0, UINT64_MAX,
                     {detail("certificate-expired", UINT64_MAX),
                      detail("certificate-expired", UINT64_MAX, "192.0.2.2")})),
         ""},  // saturated, as add() would have made it: accepted
        {seal(v(1) + s("a.example") + v(1) + policy("sts", 0, 3, {detail("certificate-expired", 0)})),
         "empty failure group"},
        {seal(v(1) + s("a.example") + v(1) + policy("sts", 0, 3, {detail("no-such-type", 1)})),
         "unknown result type"},
        {seal(v(1) + s("a.example") + v(1) +
              policy("sts", 0, 3, {detail("certificate-expired", 1), detail("certificate-expired", 1)})),
         "duplicate failure group"},
        {seal(v(1) + s("a.example") + v(1) + s("sts") + v(65)), "too many policy strings"},
        {seal(v(1) + s("a.example") + v(1) + s("sts") + v(0) + v(0) + v(0) + v(5) + v(101)),
         "too many failure groups"},
        {seal(v(1) + s("a.example") + v(1) + s("sts") + v(1) + s(std::string(kMaxPolicyString + 1, 'x'))),
         "string too long"},
    };
    for (auto& c : cases) {
        CAPTURE(c.err);
        bool ok = decodes(c.in, &why);
        CHECK(ok == c.err.empty());
        CHECK(why == c.err);
    }
    CHECK_FALSE(decodes(""));
    CHECK_FALSE(decodes(std::string(1, '\x01')));
}

TEST_CASE("tlsrpt: RFC 3339 dates") {
    CHECK(rfc3339(0) == "1970-01-01T00:00:00Z");
    CHECK(rfc3339(951827696) == "2000-02-29T12:34:56Z");
    CHECK(rfc3339(1769817600) == "2026-01-31T00:00:00Z");
    CHECK(rfc3339(4107542400) == "2100-03-01T00:00:00Z");
    CHECK(rfc3339(UINT64_MAX) == "9999-12-31T23:59:59Z");
}

TEST_CASE("tlsrpt: report_json has the RFC 8460 fields") {
    Aggregate a = sample();
    Result odd = failure("no-policy-found", "b.example", "validation-failure", "mx.b.example", "192.0.2.7");
    odd.failure_reason_code = std::string("quote\" back\\ nl\n bad\xff utf8");
    a.add(odd);
    std::string j = report_json(a, "a.example", meta());
    CHECK(j.rfind("{\"organization-name\":\"Example Sender Org\",", 0) == 0);
    CHECK(contains(j, "\"date-range\":{\"start-datetime\":\"2026-01-31T00:00:00Z\","
                      "\"end-datetime\":\"2026-01-31T23:59:59Z\"}"));
    CHECK(contains(j, "\"contact-info\":\"tlsrpt@sender.example\""));
    CHECK(contains(j, "\"report-id\":\"2026-01-31T00:00:00Z_a.example@sender.example\""));
    CHECK(contains(j, "{\"policy\":{\"policy-type\":\"sts\",\"policy-string\":[\"version: STSv1\",\"mode: enforce\","
                      "\"mx: *.mail.a.example\",\"max_age: 86400\"],\"policy-domain\":\"a.example\","
                      "\"mx-host\":[\"*.mail.a.example\"]}"));
    CHECK(contains(j, "\"summary\":{\"total-successful-session-count\":40,\"total-failure-session-count\":4}"));
    CHECK(contains(j, "{\"result-type\":\"certificate-expired\",\"sending-mta-ip\":\"198.51.100.7\","
                      "\"receiving-mx-hostname\":\"mx1.mail.a.example\",\"receiving-mx-helo\":\"mx1.mail.a.example\","
                      "\"receiving-ip\":\"192.0.2.25\",\"failed-session-count\":3}"));
    CHECK(contains(j, "\"failure-reason-code\":\"X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN\""));
    // tlsa: no patterns, so no mx-host; no failures, an empty list.
    CHECK(contains(j, "{\"policy\":{\"policy-type\":\"tlsa\",\"policy-string\":[\"3 1 1 0123456789abcdef\"],"
                      "\"policy-domain\":\"a.example\"},\"summary\":{\"total-successful-session-count\":5,"
                      "\"total-failure-session-count\":0},\"failure-details\":[]}"));
    CHECK_FALSE(contains(j, "b.example"));
    CHECK_FALSE(contains(j, "additional-information"));

    std::string jb = report_json(a, "b.example", meta());
    CHECK(contains(jb, "\"policy-type\":\"no-policy-found\",\"policy-string\":[],\"policy-domain\":\"b.example\"}"));
    CHECK(contains(jb, "\"failure-reason-code\":\"quote\\\" back\\\\ nl\\u000a bad\\ufffd utf8\""));
    CHECK_FALSE(contains(jb, "receiving-mx-helo"));
    CHECK(contains(report_json(a, "none.example", meta()), "\"policies\":[]}"));
}

TEST_CASE("tlsrpt: gzip output inflates back") {
    std::string big;
    for (int i = 0; i < 200000; i++) big += char((i * 7919) % 251);  // 200 kB, poorly compressible
    for (const std::string& in : {std::string(), std::string("{}"), std::string(300000, 'a'), big}) {
        std::string gz, err;
        REQUIRE(gzip(in, gz, err));
        REQUIRE(gz.size() >= 18);
        CHECK(static_cast<uint8_t>(gz[0]) == 0x1f);
        CHECK(static_cast<uint8_t>(gz[1]) == 0x8b);
        CHECK(inflate_gzip(gz) == in);
        std::string again;
        REQUIRE(gzip(in, again, err));
        CHECK(again == gz);  // no timestamp: the same bytes every time
    }
}

TEST_CASE("tlsrpt: parse_record") {
    Rua r;
    std::string err;
    REQUIRE(parse_record("v=TLSRPTv1; rua=mailto:tlsrpt@a.example", r, err));
    CHECK(r.mailto == std::vector<std::string>{"tlsrpt@a.example"});
    CHECK(r.https.empty());

    REQUIRE(parse_record("v=TLSRPTv1 ;rua=mailto:one@a.example , https://reports.a.example/tlsrpt;", r, err));
    CHECK(r.mailto == std::vector<std::string>{"one@a.example"});
    CHECK(r.https == std::vector<std::string>{"https://reports.a.example/tlsrpt"});

    // Percent-encoded, a query, MAILTO in capitals, a second rua field, an unknown extension.
    REQUIRE(parse_record("v=TLSRPTv1;rua=mailto:tls%2Brpt%21x@a.example?subject=TLS%20report,"
                         "MAILTO:two@b.example; ext.x=1;rua=mailto:three@c.example,mailto:two@b.example",
                         r, err));
    CHECK(r.mailto == std::vector<std::string>{"tls+rpt!x@a.example", "two@b.example", "three@c.example"});

    REQUIRE(parse_record("v=TLSRPTv1; rua=https://r.example/x?a=1", r, err));
    CHECK(r.mailto.empty());
    CHECK(r.https == std::vector<std::string>{"https://r.example/x?a=1"});

    // Unusable URIs are skipped while another is left.
    REQUIRE(parse_record("v=TLSRPTv1; rua=mailto:no-at-sign,http://plain.example/,mailto:ok@a.example", r, err));
    CHECK(r.mailto == std::vector<std::string>{"ok@a.example"});
    CHECK(r.https.empty());

    struct Bad {
        const char* txt;
        const char* err;
    };
    const Bad bad[] = {
        {"rua=mailto:tlsrpt@a.example", "not a TLSRPT record (no v=TLSRPTv1 first)"},
        {"rua=mailto:tlsrpt@a.example; v=TLSRPTv1", "not a TLSRPT record (no v=TLSRPTv1 first)"},
        {" v=TLSRPTv1; rua=mailto:tlsrpt@a.example", "not a TLSRPT record (no v=TLSRPTv1 first)"},
        {"v=tlsrptv1; rua=mailto:tlsrpt@a.example", "not a TLSRPT record (no v=TLSRPTv1 first)"},
        {"v=TLSRPTv10; rua=mailto:tlsrpt@a.example", "not a TLSRPT record (v=TLSRPTv1 not followed by ';')"},
        {"v=TLSRPTv1", "no rua"},
        {"v=TLSRPTv1; ext=1", "no rua"},
        {"v=TLSRPTv1; rua=", "no usable rua URI"},
        {"v=TLSRPTv1; rua=mailto:a%2Cb@a.example", "no usable rua URI"},   // a decoded comma
        {"v=TLSRPTv1; rua=mailto:a%2@a.example", "no usable rua URI"},     // a broken escape
        {"v=TLSRPTv1; rua=mailto:a@localhost", "no usable rua URI"},
        {"v=TLSRPTv1; rua=mailto:a@b@c.example", "no usable rua URI"},
        {"v=TLSRPTv1; rua=https://", "no usable rua URI"},
        {"v=TLSRPTv1; rua=ftp://x.example/", "no usable rua URI"},
        {"v=TLSRPTv1; garbage; rua=mailto:tlsrpt@a.example", "malformed field \"garbage\""},
        {"v=TLSRPTv1; -x=1; rua=mailto:tlsrpt@a.example", "malformed field \"-x=1\""},
    };
    for (auto& b : bad) {
        CAPTURE(b.txt);
        Rua keep;
        keep.https = {"https://untouched.example/"};
        std::string e;
        CHECK_FALSE(parse_record(b.txt, keep, e));
        CHECK(e == b.err);
        CHECK(keep.https == std::vector<std::string>{"https://untouched.example/"});
    }
    std::string nul("v=TLSRPTv1; rua=mailto:a\0b@a.example", 37);
    CHECK_FALSE(parse_record(nul, r, err));
    CHECK_FALSE(parse_record("v=TLSRPTv1; rua=mailto:a%00b@a.example", r, err));
}

TEST_CASE("tlsrpt: report_message headers and filename") {
    Aggregate a = sample();
    std::string err;
    std::string m = report_message(a, "a.example", meta(), message_meta(), err);
    REQUIRE(!m.empty());
    CHECK(err.empty());
    std::size_t head_end = m.find("\r\n\r\n");
    REQUIRE(head_end != std::string::npos);
    std::string head = m.substr(0, head_end + 2);
    CHECK(head.rfind("From: <tlsrpt@sender.example>\r\n", 0) == 0);
    CHECK(contains(head, "\r\nTo: <reports@a.example>\r\n"));
    CHECK(contains(head, "\r\nDate: Sat, 31 Jan 2026 23:59:59 +0000\r\n"));
    CHECK(contains(head, "\r\nMessage-ID: <tlsrpt.1769903999.a.example@sender.example>\r\n"));
    CHECK(contains(head, "\r\nSubject: Report Domain: a.example\r\n Submitter: sender.example\r\n"
                         " Report-ID: <2026-01-31T00:00:00Z_a.example@sender.example>\r\n"));
    CHECK(contains(head, "\r\nTLS-Report-Domain: a.example\r\n"));
    CHECK(contains(head, "\r\nTLS-Report-Submitter: sender.example\r\n"));
    CHECK(contains(head, "\r\nMIME-Version: 1.0\r\n"));
    CHECK(contains(head, "\r\nContent-Type: multipart/report; report-type=\"tlsrpt\";\r\n\tboundary=\""));
    CHECK(contains(m, "\r\nContent-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n"
                      "Content-Disposition: attachment;\r\n\tfilename=\"sender.example!a.example!1769817600!"
                      "1769903999!20260131T000000Zaexamplesenderexample.json.gz\"\r\n"));
    CHECK(contains(m, "Successful TLS sessions: 45\r\n"));
    CHECK(contains(m, "Failed TLS sessions: 4\r\n"));
    CHECK(m.size() >= 2);
    CHECK(m.compare(m.size() - 2, 2, "\r\n") == 0);
    // CRLF only, no line over 998 octets, base64 at 76.
    std::vector<std::string> lines;
    for (std::size_t start = 0; start < m.size();) {
        std::size_t eol = m.find("\r\n", start);
        REQUIRE(eol != std::string::npos);
        lines.push_back(m.substr(start, eol - start));
        start = eol + 2;
    }
    std::size_t b64 = 0;
    for (std::size_t i = 0; i < lines.size(); i++) {
        CHECK(lines[i].find_first_of("\r\n") == std::string::npos);
        CHECK(lines[i].size() <= 998);
        if (lines[i].rfind("\tfilename=", 0) == 0) b64 = i + 2;  // after the empty line
    }
    REQUIRE(b64 > 0);
    for (std::size_t i = b64; i < lines.size() && !lines[i].empty(); i++) {
        CAPTURE(i);
        CHECK((lines[i].size() == 76 || lines[i + 1].empty()));
        CHECK(lines[i].find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") ==
              std::string::npos);
    }

    // Hostile text cannot add a header or break the filename.
    MessageMeta mm = message_meta();
    mm.submitter = "evil.example\r\nBcc: x@y";
    ReportMeta rm = meta();
    rm.report_id = "id>\r\nX-Injected: 1";
    std::string m2 = report_message(a, "a.example", rm, mm, err);
    CHECK_FALSE(contains(m2, "\r\nBcc:"));
    CHECK_FALSE(contains(m2, "\r\nX-Injected"));
    CHECK(contains(m2, "filename=\"evil.examplebccxy!a.example!1769817600!1769903999!idXInjected1.json.gz\""));
    rm.report_id = "---";
    CHECK(report_filename("a.example", rm, mm) == "evil.examplebccxy!a.example!1769817600!1769903999.json.gz");
}

TEST_CASE("tlsrpt: report_message passes Python's email, gzip and json (tlsrpt_check.py)") {
    Aggregate a = sample();
    Result r = failure("sts", "a.example", "sts-policy-fetch-error", "", "");  // no MX reached
    r.sending_mta_ip = "";
    r.policy_strings = kSts;
    r.mx_host_patterns = {"*.mail.a.example"};
    a.add(r, 6);
    std::string err;
    std::string m = report_message(a, "a.example", meta(), message_meta(), err);
    REQUIRE(!m.empty());

    char tmpl[] = "/tmp/test-tlsrpt-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    std::string dir = tmpl, path = dir + "/report.eml";
    FILE* f = fopen(path.c_str(), "wb");
    REQUIRE(f);
    CHECK(fwrite(m.data(), 1, m.size(), f) == m.size());
    fclose(f);

    // Run from the repository root, as the unit tests are.
    std::string cmd = "/usr/bin/python3 tests/unit/tlsrpt_check.py " + path;
    FILE* p = popen(cmd.c_str(), "r");
    REQUIRE(p);
    std::string out;
    char buf[4096];
    std::size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    int status = pclose(p);
    unlink(path.c_str());
    rmdir(dir.c_str());

    INFO("tlsrpt_check.py output: " << out);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(contains(out, "\"total-successful-session-count\": 40"));
    CHECK(contains(out, "\"total-failure-session-count\": 10"));
    CHECK(contains(out, "\"total-successful-session-count\": 5"));
    CHECK(contains(out, "\"failed-session-count\": 3"));
    CHECK(contains(out, "\"failed-session-count\": 6"));
    CHECK(contains(out, "\"result-type\": \"sts-policy-fetch-error\""));
    CHECK(contains(out, "\"policy-domain\": \"a.example\""));
    CHECK_FALSE(contains(out, "b.example"));
}
