// Unit tests for common/routing: local domains to mta-local or LMTP, the rest to mta-smtp.
#include <doctest/doctest.h>

#include "common/routing.h"

using namespace mta;

TEST_CASE("routing: maildir, lmtp and remote domains") {
    Config c;
    std::vector<ConfigError> errors;
    REQUIRE(parse_config("local_domains = example.org localhost\n", "t", c, errors));
    auto r = route(c, "example.org");
    CHECK(r.role == "local");
    CHECK(r.nexthop == "example.org");
    CHECK(route(c, "").role == "local");
    r = route(c, "remote.example");
    CHECK(r.role == "smtp");
    CHECK(r.nexthop == "remote.example");

    REQUIRE(parse_config("local_domains = example.org\nlocal_transport = lmtp:[127.0.0.1]:24\n", "t", c, errors));
    r = route(c, "example.org");
    CHECK(r.role == "smtp");
    CHECK(r.nexthop == "lmtp:[127.0.0.1]:24");
    CHECK(route(c, "remote.example").nexthop == "remote.example");

    REQUIRE(parse_config("local_transport = lmtp:unix:/run/dovecot/lmtp\n", "t", c, errors));
    CHECK(route(c, "localhost").nexthop == "lmtp:unix:/run/dovecot/lmtp");
}

TEST_CASE("routing: local_transport syntax is checked") {
    Config c;
    std::vector<ConfigError> errors;
    CHECK_FALSE(parse_config("local_transport = lmtp:127.0.0.1\n", "t", c, errors));
    CHECK_FALSE(parse_config("local_transport = lmtp:unix:relative\n", "t", c, errors));
    CHECK_FALSE(parse_config("local_transport = dovecot\n", "t", c, errors));
    CHECK(parse_config("local_transport = maildir\n", "t", c, errors));
}
