// Unit tests for master/listener_checks: when the wildcard [::] listener is dual-stack.
#include <doctest/doctest.h>

#include "master/listener_checks.h"
#include "tests/unit/config_with.h"

using namespace mta;
using mta::test::config_with;

TEST_CASE("listeners: [::]:port alone is dual-stack") {
    CHECK(master::ipv6_wildcard_dual_stack(config_with("smtp_listen = [::]:25\n"), 25));
    // Other ports, and IPv6 addresses on the same port, do not take IPv4 from it.
    CHECK(master::ipv6_wildcard_dual_stack(config_with("smtp_listen = [::]:25, [::1]:25, 127.0.0.1:587\n"), 25));
}

TEST_CASE("listeners: an IPv4 entry on the same port keeps [::] IPv6-only") {
    CHECK_FALSE(master::ipv6_wildcard_dual_stack(config_with("smtp_listen = [::]:25 0.0.0.0:25\n"), 25));
    CHECK_FALSE(master::ipv6_wildcard_dual_stack(config_with("smtp_listen = [::]:25 127.0.0.1:25\n"), 25));
    CHECK_FALSE(master::ipv6_wildcard_dual_stack(config_with("smtp_listen = :25\n"), 25));  // binds 0.0.0.0 and ::
    CHECK_FALSE(master::ipv6_wildcard_dual_stack(config_with("smtp_listen = [::]:25 localhost:25\n"), 25));  // a name may be IPv4
    // Any of the three keys counts: they all bind in the same address space.
    CHECK_FALSE(master::ipv6_wildcard_dual_stack(config_with("smtp_listen = [::]:587\nsubmission_listen = 0.0.0.0:587\n"), 587));
}
