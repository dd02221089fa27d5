// Unit tests for queue-manager/shaping: sliding windows, the limits of destination_policy, the adaptive
// cut on a slow-down reply and its recovery, on an injected clock; and destination_policy parsing.
#include <doctest/doctest.h>

#include <string>

#include "common/routing.h"
#include "queue-manager/shaping.h"

using namespace mta::queue;
using mta::DestinationPolicy;

namespace {
DestinationPolicy policy(const char* text) {
    DestinationPolicy p;
    std::string err;
    REQUIRE(mta::parse_destination_policy(text, p, err));
    p.key = "example.net";
    return p;
}
}  // namespace

TEST_CASE("destination_policy values") {
    DestinationPolicy p;
    std::string err;
    REQUIRE(mta::parse_destination_policy("max_per_minute=60  max_connections=3 max_per_hour=1000 adaptive=no "
                                          "max_per_connection=20", p, err));
    CHECK(p.max_per_connection == 20);
    CHECK(p.max_per_minute == 60);
    CHECK(p.max_connections == 3);
    CHECK(p.max_per_hour == 1000);
    CHECK_FALSE(p.adaptive);
    for (const char* bad : {"", "   ", "max_per_minute", "max_per_minute=", "max_per_minute=0", "max_per_minute=x",
                            "max_per_minute=20000000", "speed=3", "adaptive=maybe", "max_connections=-1"}) {
        INFO(bad);
        CHECK_FALSE(mta::parse_destination_policy(bad, p, err));
        CHECK_FALSE(err.empty());
    }
    CHECK(mta::valid_policy_key("gmail.com"));
    CHECK(mta::valid_policy_key(".example.net"));
    CHECK(mta::valid_policy_key("*"));
    CHECK(mta::valid_policy_key("[127.0.0.1]:2525"));
    CHECK(mta::valid_policy_key("[relay.example.net]"));
    CHECK_FALSE(mta::valid_policy_key("[127.0.0.1]:0"));
    CHECK_FALSE(mta::valid_policy_key("[127.0.0.1]x"));
    CHECK_FALSE(mta::valid_policy_key("[]"));
}

TEST_CASE("a sliding window counts the last span and says when room comes back") {
    WindowCount w(1, 60);
    for (uint64_t t = 100; t < 110; t++) w.add(t);  // one a second
    CHECK(w.count(110) == 10);
    CHECK(w.free_at(110, 11) == 0);
    CHECK(w.free_at(110, 10) == 161);  // the one sent during second 100 has surely left at 161
    CHECK(w.free_at(110, 5) == 166);
    CHECK(w.count(161) == 9);
    CHECK(w.count(170) == 0);
    WindowCount h(60, 3600);
    h.add(1019);  // counted in the minute from 960: it leaves once that whole minute has
    CHECK(h.free_at(1019, 1) == 960 + 60 + 3600);
    CHECK(w.empty(170));
}

TEST_CASE("max_per_minute and max_per_hour hold a destination, the hour over the minute") {
    Shaper s;
    s.set_policy("d", policy("max_per_minute=3 max_per_hour=5"));
    std::string why;
    uint64_t t = 1000;
    for (int i = 0; i < 3; i++) {
        CHECK(s.next_free("d", t, why) == 0);
        s.sent("d", t);
    }
    CHECK(s.next_free("d", t, why) == 1061);
    CHECK(why.find("max_per_minute=3") != std::string::npos);
    t = 1061;
    for (int i = 0; i < 2; i++) {
        CHECK(s.next_free("d", t, why) == 0);
        s.sent("d", t);
    }
    CHECK(s.next_free("d", t, why) == 960 + 60 + 3600);  // the hour is full before the minute
    CHECK(why.find("max_per_hour=5") != std::string::npos);
    CHECK(s.spacing("d") == 20);
    Shaper none;
    CHECK(none.next_free("other", t, why) == 0);
    none.set_policy("x", DestinationPolicy{});
    for (int i = 0; i < 1000; i++) none.sent("x", t);
    CHECK(none.next_free("x", t, why) == 0);  // counted for the adaptive rule, never limited
}

TEST_CASE("a slow-down reply halves the rate; it grows back step by step to where it was") {
    Shaper s;
    s.configure(600, {"please back off"});
    s.set_policy("d", DestinationPolicy{});
    uint64_t t = 5000;
    for (int i = 0; i < 40; i++) s.sent("d", t);
    CHECK(s.is_slowdown("mx[192.0.2.1] said: 421 4.7.28 rate limited"));
    CHECK(s.is_slowdown("mx[192.0.2.1] said: 451 Please Back Off now"));  // a configured pattern
    CHECK_FALSE(s.is_slowdown("mx[192.0.2.1] said: 451 4.3.0 try again"));
    CHECK(s.is_slowdown("mx[192.0.2.1] said: 421 4.3.2 Service not available, closing channel"));
    CHECK(s.is_slowdown("mx[192.0.2.1] said: 450 Too many connections from your host, slow down"));
    // One recipient receiving too much (Gmail's 4.2.1) is that recipient's problem, not our rate.
    CHECK_FALSE(s.is_slowdown("mx[192.0.2.1] said: 450 4.2.1 The user you are trying to contact is receiving "
                              "mail at a rate that prevents additional messages from being delivered"));
    Shaper::Event e = s.slowdown("d", t);
    CHECK(e.kind == Shaper::Event::cut);
    CHECK(e.rate == 20);  // 40 went out in the last minute
    CHECK(s.per_minute("d") == 20);
    CHECK(s.slowdown("d", t + 10).kind == Shaper::Event::none);  // the same burst: no second cut
    std::string why;
    for (int i = 0; i < 20; i++) s.sent("d", t + 61);
    CHECK(s.next_free("d", t + 61, why) != 0);
    CHECK(why.find("rate cut to 20/minute") != std::string::npos);
    e = s.slowdown("d", t + 100);  // later: halves again
    CHECK(e.rate == 10);
    CHECK(s.recover("d", t + 200).kind == Shaper::Event::none);  // not yet
    e = s.recover("d", t + 700);
    CHECK(e.kind == Shaper::Event::step);
    CHECK(e.rate == 16);
    e = s.recover("d", t + 1300);
    CHECK(e.kind == Shaper::Event::step);
    CHECK(e.rate == 25);
    e = s.recover("d", t + 1900);
    CHECK(e.kind == Shaper::Event::step);
    CHECK(e.rate == 38);
    e = s.recover("d", t + 2500);
    CHECK(e.kind == Shaper::Event::restored);  // back at the 40 it had: no limit any more
    CHECK(s.per_minute("d") == 0);
    CHECK(s.idle("d", t + 5000));
}

TEST_CASE("the cut never goes above the policy's limit, and adaptive=no ignores slow-down replies") {
    Shaper s;
    s.configure(60, {});
    s.set_policy("d", policy("max_per_minute=10"));
    for (int i = 0; i < 10; i++) s.sent("d", 100);
    CHECK(s.slowdown("d", 100).rate == 5);
    CHECK(s.recover("d", 160).rate == 8);
    CHECK(s.recover("d", 220).kind == Shaper::Event::restored);
    CHECK(s.per_minute("d") == 10);
    s.set_policy("n", policy("adaptive=no"));
    s.sent("n", 100);
    CHECK(s.slowdown("n", 100).kind == Shaper::Event::none);
    CHECK(s.per_minute("n") == 0);
}
