// Unit tests for queue-manager/scheduler: which recipients go now and on which link (slow start, the
// cap per link, a destination sticking to one link), job outcomes, dead destinations and link loss.
#include <doctest/doctest.h>

#include <vector>

#include "queue-manager/scheduler.h"

using namespace mta;
using namespace mta::queue;
using mta::ipc::DeliveryStatus;
using mta::DestinationPolicy;

namespace {

struct Sent {
    uint64_t link, msgid;
    std::vector<uint32_t> indices;
    std::string host;
    std::string source = {}, helo = {};
};
struct Deferred {
    uint64_t msgid;
    std::vector<uint32_t> indices;
    std::string text, relay;
};

Nexthop hop(bool local, std::string host, std::string tls = "", std::string group = "", DestinationPolicy p = {},
            std::vector<std::string> pools = {}) {
    return Nexthop{local, std::move(host), std::move(tls), std::move(group), std::move(p), std::move(pools), {}, {}};
}

struct Postponed {
    uint64_t msgid;
    std::vector<uint32_t> indices;
    uint64_t until;
    std::string text;
};

// A scheduler whose hooks record what it asked for, on a clock the test moves.
struct Fixture {
    uint64_t now = 1000;
    std::vector<Sent> sent;
    std::vector<Deferred> deferred;
    std::vector<uint64_t> wakes;
    std::vector<Postponed> postponed;
    Scheduler s{[this] { return now; },
                Scheduler::Hooks{
                    .send = [this](uint64_t link, uint64_t msgid, const std::vector<uint32_t>& idx,
                                   const Nexthop& to) {
                        sent.push_back({link, msgid, idx, to.host, to.source, to.source_helo});
                        return idx;
                    },
                    .defer = [this](uint64_t msgid, const std::vector<uint32_t>& idx, const std::string& text,
                                    const std::string& relay) {
                        deferred.push_back({msgid, idx, text, relay});
                        return idx.size();
                    },
                    .wake_at = [this](uint64_t t) { wakes.push_back(t); },
                    .postpone = [this](uint64_t msgid, const std::vector<uint32_t>& idx, uint64_t until,
                                       const std::string& text) { postponed.push_back({msgid, idx, until, text}); },
                }};
    Fixture() { s.configure(10, 300); }

    std::string queue(const std::string& host, uint64_t msgid, uint32_t index = 0, bool local = false) {
        std::string key = s.add(hop(local, host, "", ""), msgid, index, 100);
        s.pump(key);
        return key;
    }
    // Every recipient of the job sent as sent[i] answers the same way; the job then finishes.
    void answer(std::size_t i, DeliveryStatus st, const std::string& text) {
        Sent job = sent.at(i);
        std::optional<Scheduler::Answered> a;
        for (uint32_t idx : job.indices) {
            a = s.answered(job.link, job.msgid, idx, st, text);
            REQUIRE(a);
            CHECK(a->nexthop == job.host);
        }
        CHECK(a->last);
        s.finish(a->job);
    }
};

}  // namespace

TEST_CASE("nothing goes before a deliverer link is up; link_up sends what waits") {
    Fixture f;
    f.queue("example.org", 1);
    CHECK(f.sent.empty());
    f.s.link_up(7, false, 0);
    REQUIRE(f.sent.size() == 1);
    CHECK(f.sent[0].link == 7);
    CHECK(f.s.jobs_in_flight() == 1);
    CHECK(f.s.rcpts_in_flight(7) == 1);
}

TEST_CASE("a remote destination starts slow and gains one job per delivery") {
    Fixture f;
    f.s.link_up(1, false, 0);
    std::string key;
    for (uint64_t m = 1; m <= 6; m++) key = f.queue("example.org", m);
    CHECK(f.sent.size() == Scheduler::kSlowStartWindow);
    CHECK(f.s.window(key) == 2);
    f.answer(0, DeliveryStatus::delivered, "2.0.0 ok");
    CHECK(f.s.window(key) == 3);
    CHECK(f.sent.size() == 4);  // one replaced, one more allowed
    f.answer(1, DeliveryStatus::deferred, "4.2.0 busy");  // answered: alive, no change
    CHECK(f.s.window(key) == 3);
    CHECK(f.sent.size() == 5);
}

TEST_CASE("local delivery is not slowed down") {
    Fixture f;
    f.s.link_up(1, true, 0);
    for (uint64_t m = 1; m <= 12; m++) f.queue("localhost", m, 0, true);
    CHECK(f.sent.size() == 10);  // delivery_concurrency
}

TEST_CASE("recipients of one message to one destination share a job") {
    Fixture f;
    for (uint32_t i = 0; i < 3; i++) f.s.add(hop(false, "example.org", "", ""), 5, i, 100);
    f.s.add(hop(false, "example.net", "", ""), 5, 3, 100);
    f.s.link_up(1, false, 0);
    REQUIRE(f.sent.size() == 2);
    for (auto& s : f.sent) {
        if (s.host == "example.org") CHECK(s.indices == std::vector<uint32_t>{0, 1, 2});
        else CHECK(s.indices == std::vector<uint32_t>{3});
    }
}

TEST_CASE("recipients of different domains behind one relayhost share a job, a budget and a dead mark") {
    Fixture f;
    f.s.add(hop(false, "example.org", "", "[192.0.2.1]:25"), 5, 0, 100);
    f.s.add(hop(false, "example.net", "", "[192.0.2.1]:25"), 5, 1, 100);
    f.s.add(hop(false, "example.com", "encrypt", "[192.0.2.1]:25"), 5, 2, 100);  // another TLS level
    f.s.add(hop(false, "example.net", "", "[192.0.2.1]:25"), 6, 0, 100);
    f.s.link_up(1, false, 0);
    REQUIRE(f.sent.size() == 3);  // message 5 as two jobs (two TLS levels), and message 6
    std::size_t both = 3;
    for (std::size_t i = 0; i < f.sent.size(); i++) {
        const Sent& j = f.sent[i];
        if (j.msgid == 6) CHECK(j.host == "example.net");
        else if (j.host == "example.com") CHECK(j.indices == std::vector<uint32_t>{2});
        else both = i;
    }
    REQUIRE(both < 3);
    CHECK(f.sent[both].indices == std::vector<uint32_t>{0, 1});  // two domains, one job
    CHECK(f.sent[both].host == "example.org");  // the deliverer gets the first recipient's domain
    // The answer names the relayhost, and connection failures count for it, not for a domain.
    auto a = f.s.answered(1, 5, 0, DeliveryStatus::deferred, "4.4.1 connect to [192.0.2.1]:25: refused");
    REQUIRE(a);
    CHECK(a->nexthop == "[192.0.2.1]:25");
}

TEST_CASE("a destination sticks to one smtp link; local goes to the first local link") {
    Fixture f;
    f.s.link_up(1, false, 0);
    f.s.link_up(2, false, 1);
    f.s.link_up(3, true, 4);
    f.s.link_up(4, true, 2);
    for (uint64_t m = 1; m <= 2; m++) f.queue("example.org", m);
    f.queue("localhost", 9, 0, true);
    REQUIRE(f.sent.size() == 3);
    CHECK(f.sent[0].link == f.sent[1].link);
    CHECK(f.sent[2].link == 4);
}

TEST_CASE("a full link blocks its destinations until a job finishes") {
    Fixture f;
    f.s.configure(1000, 300);
    f.s.link_up(1, true, 0);
    for (uint64_t m = 1; m <= Scheduler::kLinkInflight + 2; m++) f.queue("localhost", m, 0, true);
    CHECK(f.sent.size() == Scheduler::kLinkInflight);
    f.answer(0, DeliveryStatus::delivered, "2.0.0 ok");
    CHECK(f.sent.size() == Scheduler::kLinkInflight + 1);
}

TEST_CASE("an answer for a recipient not in flight on that link is refused") {
    Fixture f;
    f.s.link_up(1, false, 0);
    f.s.link_up(2, false, 1);
    f.queue("example.org", 1);
    REQUIRE(f.sent.size() == 1);
    uint64_t other = f.sent[0].link == 1 ? 2 : 1;
    CHECK_FALSE(f.s.answered(other, 1, 0, DeliveryStatus::delivered, "2.0.0"));
    CHECK_FALSE(f.s.answered(f.sent[0].link, 1, 1, DeliveryStatus::delivered, "2.0.0"));
    CHECK(f.s.answered(f.sent[0].link, 1, 0, DeliveryStatus::delivered, "2.0.0"));
    CHECK_FALSE(f.s.answered(f.sent[0].link, 1, 0, DeliveryStatus::delivered, "2.0.0"));  // only once
}

TEST_CASE("connection failures in a row make a destination dead; its waiting recipients are deferred") {
    Fixture f;
    f.s.configure(1, 300);
    f.s.link_up(1, false, 0);
    std::string key;
    for (uint64_t m = 1; m <= 5; m++) key = f.queue("down.example", m);
    for (std::size_t i = 0; i < Scheduler::kDeadAfter; i++) {
        CHECK_FALSE(f.s.dead(key));
        f.answer(i, DeliveryStatus::deferred, "4.4.1 connection refused");
    }
    CHECK(f.s.dead(key));
    CHECK(f.sent.size() == Scheduler::kDeadAfter);
    REQUIRE(f.deferred.size() == 2);  // messages 4 and 5, without an attempt
    CHECK(f.deferred[0].relay == "dead:down.example");
    CHECK(f.deferred[0].text.find("4.4.1 destination down.example is not reachable (4.4.1 connection refused)") == 0);
    REQUIRE_FALSE(f.wakes.empty());
    CHECK(f.wakes.back() == 1300);

    // Once the back-off is over one probe goes; another failure makes it dead again at once.
    f.now = 1300;
    f.queue("down.example", 6);
    REQUIRE(f.sent.size() == Scheduler::kDeadAfter + 1);
    f.answer(Scheduler::kDeadAfter, DeliveryStatus::deferred, "4.4.1 connection refused");
    CHECK(f.s.dead(key));
    f.s.revive();
    CHECK_FALSE(f.s.dead(key));
}

TEST_CASE("a lost link hands back its recipients in flight and takes no new jobs once retired") {
    Fixture f;
    f.s.link_up(1, false, 0);
    f.s.add(hop(false, "example.org", "", ""), 1, 0, 100);
    f.s.add(hop(false, "example.org", "", ""), 1, 1, 100);
    f.queue("example.org", 2);
    REQUIRE(f.sent.size() == 2);
    f.s.link_retired(1);
    f.queue("example.org", 3);
    CHECK(f.sent.size() == 2);
    std::vector<std::pair<uint64_t, uint32_t>> lost;
    f.s.link_down(1, [&](uint64_t m, uint32_t i) { lost.emplace_back(m, i); });
    CHECK(lost == std::vector<std::pair<uint64_t, uint32_t>>{{1, 0}, {1, 1}, {2, 0}});
    CHECK(f.s.jobs_in_flight() == 0);
    f.s.link_up(2, false, 0);  // its replacement takes what waited
    REQUIRE(f.sent.size() == 3);
    CHECK(f.sent[2].msgid == 3);
}

TEST_CASE("forgotten recipients leave the waiting queues") {
    Fixture f;
    f.s.add(hop(false, "example.org", "", ""), 1, 0, 100);
    f.s.add(hop(false, "example.org", "", ""), 1, 1, 100);
    f.s.add(hop(false, "example.org", "", ""), 2, 0, 100);
    f.s.forget({{1, 1}, {2, 0}});
    f.s.link_up(1, false, 0);
    REQUIRE(f.sent.size() == 1);
    CHECK(f.sent[0].indices == std::vector<uint32_t>{0});
}

TEST_CASE("a stopped scheduler sends nothing new") {
    Fixture f;
    f.s.link_up(1, false, 0);
    f.s.stop();
    f.queue("example.org", 1);
    CHECK(f.sent.empty());
}

TEST_CASE("shaping: past max_per_minute the waiting jobs go back to the store, spread over their turns") {
    Fixture f;
    f.s.configure(10, 300);
    DestinationPolicy p;
    p.max_per_minute = 3;
    p.key = "shaped.example";
    f.s.link_up(1, false, 0);
    std::string key;
    for (uint64_t m = 1; m <= 6; m++) {
        key = f.s.add(hop(false, "shaped.example", "", "", p), m, 0, 100);
        f.s.add(hop(false, "other.example"), 100 + m, 0, 100);
    }
    // Slow start allows two jobs at once; as they finish, the third goes, then the budget is spent.
    f.s.pump(key);
    f.s.pump_all();
    for (std::size_t i = 0; i < f.sent.size() && i < 20; i++)
        if (f.sent[i].host == "shaped.example") f.answer(i, DeliveryStatus::delivered, "2.0.0 ok");
    std::size_t shaped = 0, other = 0;
    for (auto& s : f.sent) (s.host == "shaped.example" ? shaped : other)++;
    CHECK(shaped == 3);
    CHECK(other >= 2);  // the other destination is not held by the shaped one
    REQUIRE(f.postponed.size() == 3);
    CHECK(f.postponed[0].until == f.now + 61);
    CHECK(f.postponed[1].until == f.now + 61 + 20);  // one per 60/3 s
    CHECK(f.postponed[2].until == f.now + 61 + 40);
    CHECK(f.postponed[0].text.find("is shaped: max_per_minute=3 (destination_policy shaped.example)") !=
          std::string::npos);
}

TEST_CASE("shaping: max_connections caps the window; a rate-limit reply cuts the rate") {
    Fixture f;
    f.s.configure(10, 300);
    f.s.link_up(1, false, 0);
    DestinationPolicy p;
    p.max_connections = 1;
    std::string key;
    for (uint64_t m = 1; m <= 4; m++) key = f.s.add(hop(false, "one.example", "", "", p), m, 0, 100);
    f.s.pump(key);
    CHECK(f.sent.size() == 1);
    f.answer(0, DeliveryStatus::delivered, "2.0.0 ok");
    CHECK(f.s.window(key) == 1);
    CHECK(f.sent.size() == 2);
    f.answer(1, DeliveryStatus::deferred, "mx[192.0.2.1] said: 421 4.7.28 rate limited, slow down");
    CHECK(f.s.shaper().per_minute(key) == 1);  // two went out in that minute: halved
    CHECK(f.sent.size() == 2);                 // and the next waits for the budget
    CHECK(f.postponed.size() == 2);
}

TEST_CASE("source pools: a message goes from a pool address, in turn; a spent warm-up allowance waits or spills") {
    Fixture f;
    f.now = 20000 * 86400 + 3600;  // 01:00 UTC
    std::vector<SourceAddress> addrs(3);
    std::string err;
    REQUIRE(parse_source_address("192.0.2.1", "pool=new helo=new1.example.test warmup=2,4", addrs[0], err));
    REQUIRE(parse_source_address("192.0.2.2", "pool=new warmup=2", addrs[1], err));
    REQUIRE(parse_source_address("192.0.2.9", "pool=warm helo=warm.example.test", addrs[2], err));
    f.s.sources().configure(addrs);
    f.s.configure(100, 300);
    f.s.link_up(1, false, 0);
    DestinationPolicy p;
    REQUIRE(parse_destination_policy("pool=new class=big", p, err));
    auto add = [&](uint64_t msgid, std::vector<std::string> pools) {  // and it is delivered at once
        std::size_t before = f.sent.size();
        f.s.pump(f.s.add(hop(false, "example.org", "", "", p, std::move(pools)), msgid, 0, 100));
        if (f.sent.size() > before) f.answer(before, DeliveryStatus::delivered, "2.0.0 ok");
    };
    for (uint64_t m = 1; m <= 5; m++) add(m, {"new"});
    // Two each from the two warming addresses, taken in turn; the fifth waits for tomorrow.
    REQUIRE(f.sent.size() == 4);
    CHECK(f.sent[0].source == "192.0.2.1");
    CHECK(f.sent[0].helo == "new1.example.test");
    CHECK(f.sent[1].source == "192.0.2.2");
    CHECK(f.sent[1].helo == "");
    CHECK(f.sent[2].source == "192.0.2.1");
    CHECK(f.sent[3].source == "192.0.2.2");
    REQUIRE(f.postponed.size() == 1);
    CHECK(f.postponed[0].msgid == 5);
    CHECK(f.postponed[0].until == 20001 * 86400);
    CHECK(f.postponed[0].text.find("4.7.0 warm-up allowance for today used up in source pool new") == 0);
    CHECK(f.postponed[0].text.find("class big") != std::string::npos);
    // The sender's list spills to the warm pool.
    add(6, {"new", "warm"});
    REQUIRE(f.sent.size() == 5);
    CHECK(f.sent[4].source == "192.0.2.9");
    // Another destination class has its own allowance.
    DestinationPolicy q;
    REQUIRE(parse_destination_policy("max_connections=5", q, err));
    q.key = ".example.net";
    f.s.pump(f.s.add(hop(false, "example.net", "", "", q, {"new"}), 7, 0, 100));
    REQUIRE(f.sent.size() == 6);
    CHECK(f.sent[5].source == "192.0.2.1");
    // Day 2: 192.0.2.1 may send 4, 192.0.2.2 is warm (past its schedule).
    f.now += 86400;
    auto* st = f.s.sources().state("192.0.2.1");
    REQUIRE(st);
    CHECK(st->first_day == 20000);
    CHECK(f.s.sources().day_number("192.0.2.1", f.now) == 2);
    CHECK(*f.s.sources().allowance_left(addrs[0], "big", f.now) == 4);
    CHECK_FALSE(f.s.sources().allowance_left(addrs[1], "big", f.now));
}

TEST_CASE("source pools: a pool without addresses defers with the configuration error") {
    Fixture f;
    f.s.link_up(1, false, 0);
    f.s.pump(f.s.add(hop(false, "example.org", "", "", {}, {"nosuch"}), 1, 0, 100));
    CHECK(f.sent.empty());
    REQUIRE(f.deferred.size() == 1);
    CHECK(f.deferred[0].text == "4.3.5 source pool nosuch has no address in source_addresses");
}

TEST_CASE("a provider's destination (mx: group) shares one budget but keeps one job per domain") {
    Fixture f;
    f.s.link_up(1, false, 0);
    DestinationPolicy p;
    std::string err;
    REQUIRE(parse_destination_policy("max_per_minute=2", p, err));
    p.key = "mx:.provider.test";
    // One message to two domains of the provider, then one more to a third.
    std::string key = f.s.add(hop(false, "a.test", "", "mx:.provider.test", p), 1, 0, 100);
    CHECK(f.s.add(hop(false, "b.test", "", "mx:.provider.test", p), 1, 1, 100) == key);
    CHECK(f.s.add(hop(false, "c.test", "", "mx:.provider.test", p), 2, 0, 100) == key);
    f.s.pump(key);
    REQUIRE(f.sent.size() == 2);  // the budget of 2 a minute covers all three domains together
    CHECK(f.sent[0].host == "a.test");
    CHECK(f.sent[0].indices == std::vector<uint32_t>{0});
    CHECK(f.sent[1].host == "b.test");
    auto a = f.s.answered(1, 1, 0, DeliveryStatus::delivered, "250 ok");
    REQUIRE(a);
    CHECK(a->nexthop == "mx:.provider.test");  // the log's relay= names the provider's destination
    f.s.finish(a->job);  // room in the window again, but not in the budget
    REQUIRE(f.sent.size() == 2);
    REQUIRE(f.postponed.size() == 1);
    CHECK(f.postponed[0].msgid == 2);
    CHECK(f.postponed[0].text.find("destination mx:.provider.test is shaped") != std::string::npos);
}
