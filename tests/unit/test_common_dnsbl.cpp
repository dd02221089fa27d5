// Unit tests for common/dnsbl: the zone list syntax (Postfix's postscreen_dnsbl_sites), query names for
// IPv4 and IPv6 clients, and which answers count.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "common/dnsbl.h"

using namespace mta;

TEST_CASE("dnsbl zone lists: names, weights and reply patterns") {
    std::vector<DnsblZone> z;
    std::string err;
    REQUIRE(parse_dnsbl_zones("zen.example*3  BL.Example.=127.0.0.2, wl.example=127.0.[0..15].[2;4;10..11]*-5", z, err));
    REQUIRE(z.size() == 3);
    CHECK(z[0].zone == "zen.example");
    CHECK(z[0].weight == 3);
    CHECK(z[0].octets.empty());
    CHECK(z[1].zone == "bl.example");
    CHECK(z[1].weight == 1);
    CHECK(z[2].weight == -5);
    CHECK(z[2].text == "wl.example=127.0.[0..15].[2;4;10..11]*-5");
    REQUIRE(parse_dnsbl_zones("", z, err));
    CHECK(z.empty());
    for (const char* bad : {"zone*", "zone*x", "zone*2000", "zone=", "zone=127.0.0", "zone=127.0.0.256",
                            "zone=127.0.0.[5..2]", "zone=127.0.0.[2", "zone=127.0.0.2.1", "bad_zone!", "*3",
                            "zone=127.0.0.[]", "zone=127.0.0.[1;;2]"}) {
        INFO(bad);
        CHECK_FALSE(parse_dnsbl_zones(bad, z, err));
        CHECK_FALSE(err.empty());
    }
    std::string many;
    for (int i = 0; i < 65; i++) many += "z" + std::to_string(i) + ".example ";
    CHECK_FALSE(parse_dnsbl_zones(many, z, err));
}

TEST_CASE("dnsbl query names") {
    CHECK(dnsbl_query_name("192.0.2.1", "bl.example") == "1.2.0.192.bl.example");
    CHECK(dnsbl_query_name("2001:db8::1", "bl.example") ==
          "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.example");
    CHECK(dnsbl_query_name("not an ip", "bl.example").empty());
    CHECK(dnsbl_query_name("", "bl.example").empty());
}

TEST_CASE("dnsbl answers: 127/8 by default, the pattern when given") {
    std::vector<DnsblZone> z;
    std::string err;
    REQUIRE(parse_dnsbl_zones("any.example exact.example=127.0.0.2 range.example=127.0.[0..1].[2;10..11]", z, err));
    CHECK(dnsbl_match(z[0], "127.0.0.2"));
    CHECK(dnsbl_match(z[0], "127.255.1.9"));
    CHECK_FALSE(dnsbl_match(z[0], "10.0.0.2"));  // a wildcard or hijacked answer outside 127/8
    CHECK_FALSE(dnsbl_match(z[0], "garbage"));
    CHECK(dnsbl_match(z[1], "127.0.0.2"));
    CHECK_FALSE(dnsbl_match(z[1], "127.0.0.3"));
    CHECK(dnsbl_match(z[2], "127.0.1.10"));
    CHECK(dnsbl_match(z[2], "127.0.0.2"));
    CHECK_FALSE(dnsbl_match(z[2], "127.0.2.2"));
    CHECK_FALSE(dnsbl_match(z[2], "127.0.0.3"));
    CHECK_FALSE(dnsbl_match(z[2], "::1"));
}
