// Unit tests for mtad's anvil bookkeeping (master/anvil.h): concurrency and rate across smtpd links,
// exact release on disconnect and when a link dies, ids that are unknown or reused, the mynetworks
// exemption, AUTH failure windows and the caps that keep memory bounded.
#include <doctest/doctest.h>

#include "master/anvil.h"

using mta::master::Anvil;

namespace {
const Anvil::Limits kLimits{3, 0, 0};
}

TEST_CASE("Anvil counts concurrent connections across links") {
    Anvil a;
    Anvil::Verdict v;
    CHECK(a.connect(1, 10, "192.0.2.1", false, 1000, kLimits, v));
    CHECK(v.result == Anvil::Result::allow);
    CHECK(v.concurrent == 1);
    CHECK(a.connect(2, 10, "192.0.2.1", false, 1000, kLimits, v));  // same id on another link: fine
    CHECK(a.connect(1, 11, "192.0.2.1", false, 1000, kLimits, v));
    CHECK(v.concurrent == 3);
    CHECK(a.connect(2, 11, "192.0.2.1", false, 1000, kLimits, v));
    CHECK(v.result == Anvil::Result::refuse_concurrency);
    CHECK(v.concurrent == 3);
    CHECK(a.connect(2, 12, "192.0.2.2", false, 1000, kLimits, v));  // another client is not affected
    CHECK(v.result == Anvil::Result::allow);
    a.disconnect(2, 11);  // refused: never counted, so nothing is released
    CHECK(a.concurrent("192.0.2.1") == 3);
    a.disconnect(1, 11);
    CHECK(a.concurrent("192.0.2.1") == 2);
    a.disconnect(1, 11);  // twice: ignored
    a.disconnect(7, 99);  // unknown link: ignored
    CHECK(a.concurrent("192.0.2.1") == 2);
    CHECK(a.connect(2, 13, "192.0.2.1", false, 1000, kLimits, v));
    CHECK(v.result == Anvil::Result::allow);
    CHECK(a.totals().refused == 1);
    CHECK(a.totals().connections == 4);
    CHECK(a.totals().clients == 2);
}

TEST_CASE("Anvil refuses a connection id that is still open on the same link") {
    Anvil a;
    Anvil::Verdict v;
    CHECK(a.connect(1, 5, "192.0.2.1", false, 1000, kLimits, v));
    CHECK_FALSE(a.connect(1, 5, "192.0.2.9", false, 1000, kLimits, v));
    CHECK(a.concurrent("192.0.2.1") == 1);
    CHECK(a.concurrent("192.0.2.9") == 0);
}

TEST_CASE("Anvil releases every connection of a link that died") {
    Anvil a;
    Anvil::Verdict v;
    for (uint64_t i = 0; i < 3; i++) a.connect(1, i, "192.0.2.1", false, 1000, kLimits, v);
    a.connect(2, 0, "192.0.2.3", false, 1000, kLimits, v);
    a.connect(1, 9, "192.0.2.3", false, 1000, kLimits, v);
    CHECK(a.connect(2, 1, "192.0.2.1", false, 1000, kLimits, v));
    CHECK(v.result == Anvil::Result::refuse_concurrency);
    a.drop_link(1);
    CHECK(a.concurrent("192.0.2.1") == 0);
    CHECK(a.concurrent("192.0.2.3") == 1);  // link 2's connection stays
    a.disconnect(1, 0);                     // late disconnects from the dead link change nothing
    CHECK(a.totals().connections == 1);
    CHECK(a.connect(2, 2, "192.0.2.1", false, 1000, kLimits, v));
    CHECK(v.result == Anvil::Result::allow);
}

TEST_CASE("Anvil connection rate: every attempt counts, windows expire, exempt clients are not limited") {
    Anvil a(60);
    Anvil::Limits lim{0, 3, 0};  // no concurrency limit
    Anvil::Verdict v;
    for (uint64_t i = 0; i < 3; i++) {
        a.connect(uint64_t(1 + i % 2), i, "198.51.100.7", false, 1000, lim, v);
        CHECK(v.result == Anvil::Result::allow);
        CHECK(v.rate == i + 1);
    }
    a.connect(1, 10, "198.51.100.7", false, 1010, lim, v);
    CHECK(v.result == Anvil::Result::refuse_rate);
    CHECK(v.rate == 4);
    a.connect(1, 11, "198.51.100.7", false, 1059, lim, v);
    CHECK(v.result == Anvil::Result::refuse_rate);
    a.connect(1, 12, "198.51.100.7", false, 1060, lim, v);  // a new window
    CHECK(v.result == Anvil::Result::allow);
    CHECK(v.rate == 1);
    for (uint64_t i = 0; i < 10; i++) {
        a.connect(2, 100 + i, "127.0.0.1", true, 1060, lim, v);
        CHECK(v.result == Anvil::Result::allow);
    }
}

TEST_CASE("Anvil concurrency: exempt clients (smtpd_client_event_limit_exceptions) are counted, never refused") {
    Anvil a(60);
    Anvil::Limits lim{2, 3, 0};
    Anvil::Verdict v;
    for (uint64_t i = 0; i < 20; i++) {
        a.connect(1 + i % 2, i, "127.0.0.5", true, 1000, lim, v);
        CHECK(v.result == Anvil::Result::allow);
        CHECK(v.concurrent == i + 1);
    }
    CHECK(a.concurrent("127.0.0.5") == 20);
    a.connect(3, 1, "192.0.2.9", false, 1000, lim, v);
    a.connect(3, 2, "192.0.2.9", false, 1000, lim, v);
    CHECK(v.result == Anvil::Result::allow);
    a.connect(3, 3, "192.0.2.9", false, 1000, lim, v);
    CHECK(v.result == Anvil::Result::refuse_concurrency);  // everyone else still has the limit
    a.connect(3, 4, "127.0.0.5", false, 1000, lim, v);
    CHECK(v.result == Anvil::Result::refuse_concurrency);  // no longer exempt (list changed on reload)
}

TEST_CASE("Anvil AUTH failures per client and window") {
    Anvil a(60);
    Anvil::Limits lim{0, 0, 5};
    CHECK(a.auth_fail("203.0.113.5", false, 1000, lim) == 1);
    CHECK(a.auth_fail("203.0.113.5", false, 1001, lim) == 2);
    CHECK(a.auth_fail("203.0.113.6", false, 1001, lim) == 1);
    CHECK(a.auth_fail("127.0.0.1", true, 1001, lim) == 0);         // mynetworks: not counted
    CHECK(a.auth_fail("203.0.113.5", false, 1001, Anvil::Limits{}) == 0);  // limit off: not counted
    Anvil::Verdict v;
    a.connect(1, 1, "203.0.113.5", false, 1002, lim, v);
    CHECK(v.auth_failures == 2);  // the new session learns the count
    CHECK(a.auth_failures("203.0.113.5", 1060) == 0);
}

TEST_CASE("Anvil caps what it tracks and fails open past the caps") {
    Anvil a(60, 4, 3);
    Anvil::Limits lim{1, 0, 0};
    Anvil::Verdict v;
    for (uint64_t i = 0; i < 3; i++) a.connect(1, i, "10.0.0." + std::to_string(i), false, 1000, lim, v);
    CHECK(a.connect(1, 3, "10.0.0.3", false, 1000, lim, v));  // link 1 is at its cap: allowed, not tracked
    CHECK(v.result == Anvil::Result::allow);
    CHECK(a.concurrent("10.0.0.3") == 0);
    a.connect(2, 0, "10.0.0.4", false, 1000, lim, v);  // the 4th address
    CHECK(a.totals().clients == 4);
    CHECK(a.connect(2, 1, "10.0.0.5", false, 1000, lim, v));  // table full: allowed, not tracked
    CHECK(v.result == Anvil::Result::allow);
    CHECK(a.totals().clients == 4);
    a.disconnect(2, 1);  // never tracked: nothing to release
    CHECK(a.totals().connections == 4);
    a.connect(2, 2, "10.0.0.4", false, 1000, lim, v);  // known addresses keep their limit
    CHECK(v.result == Anvil::Result::refuse_concurrency);
}
