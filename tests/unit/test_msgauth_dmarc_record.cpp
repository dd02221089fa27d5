// Unit tests for DMARC records (every tag, the invalid-p rule of RFC 7489 §6.6.3), organizational
// domains through libpsl with a small fixed list (and Debian's, when installed), and alignment.
#include <doctest/doctest.h>

#include <fstream>
#include <string>

#include "msgauth/dmarc_record.h"

using namespace mta::msgauth;

namespace {

const char* kList =
    "// ===BEGIN ICANN DOMAINS===\n"
    "com\nuk\nco.uk\nexample\n*.ck\n!www.ck\n"
    "// ===END ICANN DOMAINS===\n"
    "// ===BEGIN PRIVATE DOMAINS===\n"
    "blogspot.com\n"
    "// ===END PRIVATE DOMAINS===\n";

DmarcRecord parse(const std::string& txt) {
    DmarcRecord r;
    std::string err;
    INFO(txt);
    REQUIRE(parse_dmarc_record(txt, r, err));
    return r;
}

std::string error_of(const std::string& txt) {
    DmarcRecord r;
    std::string err;
    CHECK_FALSE_MESSAGE(parse_dmarc_record(txt, r, err), txt);
    return err;
}

PublicSuffixList test_list() {
    PublicSuffixList psl;
    std::string err;
    REQUIRE(psl.load_text(kList, err));
    return psl;
}

}  // namespace

TEST_CASE("DMARC record recognition: v=DMARC1 first, exactly") {
    CHECK(is_dmarc_record("v=DMARC1; p=none"));
    CHECK(is_dmarc_record("v=DMARC1"));
    CHECK(is_dmarc_record("v = DMARC1 ;p=reject"));
    CHECK(is_dmarc_record("v=DMARC1; p=reject; broken tag"));  // recognized, then refused by the parser
    CHECK_FALSE(is_dmarc_record("v=dmarc1; p=none"));
    CHECK_FALSE(is_dmarc_record("p=none; v=DMARC1"));
    CHECK_FALSE(is_dmarc_record("v=DMARC10; p=none"));
    CHECK_FALSE(is_dmarc_record("v=spf1 -all"));
    CHECK_FALSE(is_dmarc_record(""));
}

TEST_CASE("DMARC record: every tag, defaults, unknown tags") {
    DmarcRecord r = parse("v=DMARC1; p=none");
    CHECK(r.policy == DmarcPolicy::none);
    CHECK_FALSE(r.subdomain_policy);
    CHECK(r.adkim == DmarcAlignment::relaxed);
    CHECK(r.aspf == DmarcAlignment::relaxed);
    CHECK(r.pct == 100);
    CHECK(r.fo == "0");
    CHECK(r.rf == "afrf");
    CHECK(r.ri == 86400);
    CHECK(r.rua.empty());

    r = parse("v=DMARC1; p=Reject; sp=quarantine; adkim=s; aspf=s; pct=25; "
              "rua=mailto:agg@example.com,bogus, mailto:b@example.net!10m; ruf=mailto:f@example.com; "
              "fo=1:d; rf=afrf; ri=3600; future=whatever;");
    CHECK(r.policy == DmarcPolicy::reject);
    CHECK(*r.subdomain_policy == DmarcPolicy::quarantine);
    CHECK(r.adkim == DmarcAlignment::strict);
    CHECK(r.aspf == DmarcAlignment::strict);
    CHECK(r.pct == 25);
    CHECK(r.rua == std::vector<std::string>{"mailto:agg@example.com", "mailto:b@example.net!10m"});
    CHECK(r.ruf == std::vector<std::string>{"mailto:f@example.com"});
    CHECK(r.fo == "1:d");
    CHECK(r.ri == 3600);
    CHECK_FALSE(r.policy_defaulted);

    // Invalid values of tags other than p/sp keep their defaults.
    r = parse("v=DMARC1; p=quarantine; pct=101; adkim=x; aspf=; ri=-5");
    CHECK(r.pct == 100);
    CHECK(r.adkim == DmarcAlignment::relaxed);
    CHECK(r.ri == 86400);
    CHECK(parse("v=DMARC1; p=reject; pct=0").pct == 0);
}

TEST_CASE("DMARC record: a missing or invalid p= (or sp=) is p=none with a valid rua=, else unusable") {
    DmarcRecord r = parse("v=DMARC1; p=bogus; rua=mailto:d@example.com");
    CHECK(r.policy == DmarcPolicy::none);
    CHECK(r.policy_defaulted);
    r = parse("v=DMARC1; rua=mailto:d@example.com");
    CHECK(r.policy == DmarcPolicy::none);
    r = parse("v=DMARC1; p=reject; sp=bogus; rua=mailto:d@example.com");
    CHECK(r.policy == DmarcPolicy::none);
    CHECK_FALSE(r.subdomain_policy);
    CHECK(error_of("v=DMARC1; p=bogus") == "missing or invalid p=");
    CHECK(error_of("v=DMARC1; p=bogus; rua=not a uri") == "missing or invalid p=");
    CHECK(error_of("v=DMARC1") == "missing or invalid p=");
    CHECK(error_of("v=DMARC1; p=reject; sp=maybe") == "invalid sp=");
    CHECK(error_of("p=reject; v=DMARC1") == "not a DMARC1 record");
    CHECK(error_of("v=DMARC1; p=reject; p=none") == "duplicate tag p");
    CHECK(error_of("v=DMARC1; p=reject;; x") == "bad tag name");
    CHECK(error_of("v=DMARC1; p=" + std::string(20000, 'r')) == "tag list too long");
}

TEST_CASE("organizational domains with a fixed list") {
    PublicSuffixList psl = test_list();
    CHECK(psl.organizational_domain("mail.example.co.uk") == "example.co.uk");
    CHECK(psl.organizational_domain("example.co.uk") == "example.co.uk");
    CHECK(psl.organizational_domain("co.uk") == "co.uk");
    CHECK(psl.organizational_domain("a.b.c.example.com") == "example.com");
    CHECK(psl.organizational_domain("MAIL.Example.COM.") == "example.com");
    CHECK(psl.organizational_domain("x.y.foo.ck") == "y.foo.ck");
    CHECK(psl.organizational_domain("a.www.ck") == "www.ck");
    CHECK(psl.organizational_domain("me.blogspot.com") == "me.blogspot.com");
    CHECK(psl.organizational_domain("deep.sub.mta.example") == "mta.example");
    CHECK(psl.organizational_domain("com") == "com");
    CHECK(psl.organizational_domain("") == "");
    PublicSuffixList empty;
    CHECK_FALSE(empty.loaded());
    CHECK(empty.organizational_domain("a.example.com") == "a.example.com");
}

TEST_CASE("Debian's list and libpsl's built-in one load") {
    PublicSuffixList psl;
    std::string err;
    CHECK(psl.load_builtin(err));
    CHECK(psl.organizational_domain("www.bbc.co.uk") == "bbc.co.uk");
    const char* path = psl_dist_filename();
    if (path && *path && std::ifstream(path).good()) {
        PublicSuffixList dist;
        REQUIRE(dist.load_file(path, err));
        CHECK(dist.organizational_domain("a.b.example.co.uk") == "example.co.uk");
        CHECK(dist.organizational_domain("mail.example.com") == "example.com");
    }
    PublicSuffixList missing;
    CHECK_FALSE(missing.load_file("/nonexistent/psl.dat", err));
}

TEST_CASE("alignment: strict is the same name, relaxed the same organizational domain") {
    PublicSuffixList psl = test_list();
    CHECK(dmarc_aligned("example.com", "EXAMPLE.com.", DmarcAlignment::strict, psl));
    CHECK_FALSE(dmarc_aligned("mail.example.com", "example.com", DmarcAlignment::strict, psl));
    CHECK(dmarc_aligned("mail.example.com", "example.com", DmarcAlignment::relaxed, psl));
    CHECK(dmarc_aligned("a.example.co.uk", "b.example.co.uk", DmarcAlignment::relaxed, psl));
    CHECK_FALSE(dmarc_aligned("example.co.uk", "other.co.uk", DmarcAlignment::relaxed, psl));
    CHECK_FALSE(dmarc_aligned("a.blogspot.com", "b.blogspot.com", DmarcAlignment::relaxed, psl));
    CHECK_FALSE(dmarc_aligned("", "example.com", DmarcAlignment::relaxed, psl));
}
