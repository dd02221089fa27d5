// Unit tests for smtp-client/smtp_nexthop: destinations, MX parsing/ordering, null MX, loops, DNS verdicts.
#include <doctest/doctest.h>

#include <map>
#include <string>

#include "smtp-client/smtp_nexthop.h"

using namespace mta::smtp;

TEST_CASE("smtp nexthop: destination choice") {
    std::string err;
    auto d = choose_destination("example.com", "", 25, err);
    REQUIRE(d);
    CHECK(d->mx);
    CHECK(d->host == "example.com");
    CHECK(d->port == 25);
    CHECK(d->key() == "example.com:25");

    d = choose_destination("Example.COM", "[127.0.0.1]:2526", 25, err);
    REQUIRE(d);
    CHECK_FALSE(d->mx);
    CHECK(d->host == "127.0.0.1");
    CHECK(d->port == 2526);
    CHECK(d->key() == "[127.0.0.1]:2526");

    d = choose_destination("example.com", "[relay.example]", 2525, err);
    REQUIRE(d);
    CHECK_FALSE(d->mx);
    CHECK(d->host == "relay.example");
    CHECK(d->port == 2525);

    d = choose_destination("example.com", "relay.example:587", 25, err);
    REQUIRE(d);
    CHECK(d->mx);
    CHECK(d->host == "relay.example");
    CHECK(d->port == 587);

    d = choose_destination("[IPv6:2001:db8::1]", "relay.example", 25, err);  // explicit nexthop wins
    REQUIRE(d);
    CHECK_FALSE(d->mx);
    CHECK(d->host == "2001:db8::1");

    d = choose_destination("1.2.3.4", "", 25, err);
    REQUIRE(d);
    CHECK_FALSE(d->mx);

    CHECK_FALSE(choose_destination("", "", 25, err));
    CHECK_FALSE(choose_destination("example.com", "[127.0.0.1", 25, err));
    CHECK_FALSE(choose_destination("example.com", "[127.0.0.1]:0", 25, err));
    CHECK_FALSE(choose_destination("example.com", "[127.0.0.1]:99999", 25, err));
    CHECK_FALSE(choose_destination("bad..domain", "", 25, err));
    CHECK_FALSE(choose_destination("[not an ip]", "", 25, err));
}

TEST_CASE("smtp nexthop: MX records") {
    MxHost h;
    CHECK(parse_mx_record("10 mx.example.com", h));
    CHECK(h.pref == 10);
    CHECK(h.name == "mx.example.com");
    CHECK(parse_mx_record("5 MX.Example.COM.", h));
    CHECK(h.name == "mx.example.com");
    CHECK(parse_mx_record("0 .", h));
    CHECK(h.name == ".");
    CHECK_FALSE(parse_mx_record("mx.example.com", h));
    CHECK_FALSE(parse_mx_record("x mx.example.com", h));
    CHECK_FALSE(parse_mx_record("70000 mx.example.com", h));
    CHECK_FALSE(parse_mx_record("10 ", h));
    CHECK_FALSE(parse_mx_record("10 bad..name", h));
    CHECK_FALSE(parse_mx_record("10 [1.2.3.4]", h));
}

TEST_CASE("smtp nexthop: MX ordering is by preference, random among equals") {
    std::map<std::string, int> first;
    uint32_t state = 12345;
    auto rng = [&] { return state = state * 1103515245u + 12345u; };
    for (int i = 0; i < 200; i++) {
        std::vector<MxHost> v = {{20, "c"}, {10, "a"}, {10, "b"}, {30, "d"}, {20, "e"}};
        order_mx(v, rng);
        REQUIRE(v.size() == 5);
        CHECK(v[0].pref == 10);
        CHECK(v[1].pref == 10);
        CHECK(v[2].pref == 20);
        CHECK(v[3].pref == 20);
        CHECK(v[4].name == "d");
        first[v[0].name]++;
    }
    CHECK(first["a"] > 50);  // both equal-preference hosts get to go first
    CHECK(first["b"] > 50);
}

TEST_CASE("smtp nexthop: null MX and loops") {
    CHECK(is_null_mx({{0, "."}}));
    CHECK_FALSE(is_null_mx({{0, "mx.example"}}));

    std::vector<MxHost> v = {{10, "me.example"}, {20, "other.example"}};
    CHECK_FALSE(drop_self_and_worse(v, "me.example"));  // best MX is us: loop

    v = {{10, "other.example"}, {20, "me.example"}, {30, "worse.example"}};
    CHECK(drop_self_and_worse(v, "ME.example."));  // we are a backup: only better ones remain
    REQUIRE(v.size() == 1);
    CHECK(v[0].name == "other.example");

    v = {{10, "a.example"}};
    CHECK(drop_self_and_worse(v, "me.example"));
    CHECK(v.size() == 1);
}

TEST_CASE("smtp nexthop: DNS verdicts") {
    CHECK(classify_dns(0, 0, 2, "").kind == DnsVerdict::ok);
    CHECK(classify_dns(0, 1, 0, "").kind == DnsVerdict::nodata);
    CHECK(classify_dns(3, 0, 0, "").kind == DnsVerdict::nxdomain);
    CHECK(classify_dns(2, 0, 0, "").kind == DnsVerdict::temporary);
    CHECK(classify_dns(mta::kRcodeTimeout, 0, 0, "timeout").kind == DnsVerdict::temporary);
    CHECK(classify_dns(0, 2, 3, "bogus").kind == DnsVerdict::temporary);  // bogus is never trusted
    CHECK(classify_dns(5, 0, 0, "").kind == DnsVerdict::temporary);
}

TEST_CASE("smtp nexthop: ip literals") {
    CHECK(is_ip_literal("127.0.0.1"));
    CHECK(is_ip_literal("::1"));
    CHECK_FALSE(is_ip_literal("example.com"));
    CHECK_FALSE(is_ip_literal("1.2.3"));
}

#include "smtp-client/lmtp_nexthop.h"

TEST_CASE("lmtp next hops") {
    Target t;
    std::string err;
    REQUIRE(parse_lmtp_nexthop("lmtp:[127.0.0.1]:24", t, err));
    CHECK(t.ip == "127.0.0.1");
    CHECK(t.port == 24);
    REQUIRE(parse_lmtp_nexthop("lmtp:[::1]:2424", t, err));
    CHECK(t.sa.ss_family == AF_INET6);
    REQUIRE(parse_lmtp_nexthop("lmtp:unix:/run/dovecot/lmtp", t, err));
    CHECK(t.sa.ss_family == AF_UNIX);
    CHECK(t.ip == "unix:/run/dovecot/lmtp");
    CHECK_FALSE(parse_lmtp_nexthop("lmtp:unix:relative", t, err));
    CHECK_FALSE(parse_lmtp_nexthop("lmtp:unix:/" + std::string(200, 'x'), t, err));
    CHECK_FALSE(parse_lmtp_nexthop("lmtp:[host.example]:24", t, err));
    CHECK_FALSE(parse_lmtp_nexthop("lmtp:[127.0.0.1]", t, err));
    CHECK_FALSE(parse_lmtp_nexthop("lmtp:[127.0.0.1]:0", t, err));
    CHECK_FALSE(parse_lmtp_nexthop("lmtp:127.0.0.1:24", t, err));
    CHECK_FALSE(parse_lmtp_nexthop("smtp:[127.0.0.1]:24", t, err));
    CHECK(is_lmtp_nexthop("lmtp:x"));
    CHECK_FALSE(is_lmtp_nexthop("example.com"));
}
