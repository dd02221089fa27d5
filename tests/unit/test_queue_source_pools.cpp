// SourcePools: pool membership, turns, warm-up allowances by day and class, the stored state.
#include <doctest/doctest.h>

#include <sys/socket.h>

#include "queue-manager/source_pools.h"

using namespace mta;
using namespace mta::queue;

namespace {

SourceAddress src(const std::string& addr, const std::string& value) {
    SourceAddress a;
    std::string err;
    REQUIRE_MESSAGE(parse_source_address(addr, value, a, err), err);
    return a;
}

constexpr uint64_t kDay = 86400;

}  // namespace

TEST_CASE("source_addresses entries: canonical address, family, helo, pools, warm-up days") {
    SourceAddress a;
    std::string err;
    REQUIRE(parse_source_address("2001:DB8:0:0::5", "helo=Out.Example.TEST pool=bulk,new warmup=50,100,200", a, err));
    CHECK(a.address == "2001:db8::5");
    CHECK(a.family == AF_INET6);
    CHECK(a.helo == "out.example.test");
    CHECK(a.pools == std::vector<std::string>{"bulk", "new"});
    CHECK(a.warmup == std::vector<uint32_t>{50, 100, 200});
    REQUIRE(parse_source_address("192.0.2.7", "", a, err));
    CHECK(a.pools == std::vector<std::string>{"default"});
    CHECK(a.family == AF_INET);
    CHECK_FALSE(parse_source_address("mail.example", "pool=a", a, err));
    CHECK_FALSE(parse_source_address("192.0.2.7", "warmup=50,,100", a, err));
    CHECK_FALSE(parse_source_address("192.0.2.7", "warmup=0", a, err));
    CHECK_FALSE(parse_source_address("192.0.2.7", "pool=a,a", a, err));
    CHECK_FALSE(parse_source_address("192.0.2.7", "pool=a/b", a, err));
    CHECK_FALSE(parse_source_address("192.0.2.7", "helo=bad..name", a, err));
    CHECK_FALSE(parse_source_address("192.0.2.7", "speed=fast", a, err));
    std::vector<std::string> pools;
    CHECK(parse_pool_list("A,b-2,c.d", pools, err));
    CHECK(pools == std::vector<std::string>{"a", "b-2", "c.d"});
    CHECK_FALSE(parse_pool_list("", pools, err));
    CHECK_FALSE(parse_pool_list("a,", pools, err));
    CHECK_FALSE(parse_pool_list("a,b,c,d,e,f,g,h,i", pools, err));
}

TEST_CASE("warm-up: the allowance follows the day of first use, per destination class, resets at UTC midnight") {
    SourcePools sp;
    SourceAddress a = src("192.0.2.1", "pool=p warmup=2,3");
    sp.configure({a});
    uint64_t t = 30000 * kDay + 23 * 3600;  // 23:00 UTC on day 30000
    CHECK(sp.day_number(a.address, t) == 1);  // never used: day 1 when it is
    CHECK(*sp.allowance_left(a, "*", t) == 2);
    sp.sent(a.address, "*", t);
    sp.sent(a.address, "*", t);
    CHECK(*sp.allowance_left(a, "*", t) == 0);
    CHECK(*sp.allowance_left(a, "gmail", t) == 2);
    SourcePools::Choice c = sp.pick({"p"}, "*", t);
    CHECK(c.source == nullptr);
    CHECK(c.wait_until == 30001 * kDay);
    CHECK(c.why.find("192.0.2.1 day 1: 2") != std::string::npos);
    t += 3600;  // midnight: day 2, fresh counts
    CHECK(sp.day_number(a.address, t) == 2);
    CHECK(*sp.allowance_left(a, "*", t) == 3);
    c = sp.pick({"p"}, "*", t);
    REQUIRE(c.source);
    CHECK(c.source->address == "192.0.2.1");
    CHECK(c.pool == "p");
    t += kDay;  // day 3: past the schedule, warm
    CHECK_FALSE(sp.allowance_left(a, "*", t));
}

TEST_CASE("warm-up state survives a restart through encode/decode; bad bytes are refused") {
    SourcePools sp;
    sp.configure({src("192.0.2.1", "warmup=10")});
    sp.sent("192.0.2.1", ".gmail.com", 40000 * kDay + 5);
    sp.sent("192.0.2.1", "*", 40000 * kDay + 6);
    auto dirty = sp.dirty();
    REQUIRE(dirty.size() == 1);
    CHECK(sp.dirty().empty());
    SourcePools::State back;
    std::string err;
    REQUIRE(SourcePools::decode(dirty[0].second, back, err));
    CHECK(back == *sp.state("192.0.2.1"));
    CHECK(back.counts.at(".gmail.com") == 1);
    SourcePools other;
    other.load("192.0.2.1", back);
    CHECK(other.day_number("192.0.2.1", 40002 * kDay) == 3);
    for (const char* bad : {"", "2 1 1", "1 x 1", "1 1", "1 1 1 a", "1 1 1 =5", "1 1 1 a=", "1 1 1 a=-1",
                            "1 1 1 a=99999999999999999999999"})
        CHECK_FALSE(SourcePools::decode(bad, back, err));
    // mtaqueue warmup set: an address already in use elsewhere starts later in its schedule.
    uint64_t day = 0;
    REQUIRE(parse_utc_date("2026-12-01", day));
    CHECK(utc_date_text(day) == "2026-12-01");
    sp.set_first_day("192.0.2.1", day);
    CHECK(sp.day_number("192.0.2.1", (day + 4) * kDay) == 5);
    CHECK_FALSE(parse_utc_date("2026-02-30", day));
    CHECK_FALSE(parse_utc_date("2026-1-01", day));
    CHECK_FALSE(parse_utc_date("1969-12-31", day));
}

TEST_CASE("pools: members in turn, an address in two pools, spill order, a reconfigure keeps the counts") {
    SourcePools sp;
    sp.configure({src("192.0.2.1", "pool=a,b"), src("192.0.2.2", "pool=a"), src("2001:db8::3", "pool=b warmup=1")});
    uint64_t t = 50000 * kDay;
    std::vector<std::string> got;
    for (int i = 0; i < 4; i++) got.push_back(sp.pick({"a"}, "*", t).source->address);
    CHECK(got == std::vector<std::string>{"192.0.2.1", "192.0.2.2", "192.0.2.1", "192.0.2.2"});
    SourcePools::Choice c = sp.pick({"b"}, "*", t);
    REQUIRE(c.source);
    sp.sent(c.source->address, "*", t);
    c = sp.pick({"b"}, "*", t);
    REQUIRE(c.source);
    sp.sent(c.source->address, "*", t);
    CHECK(sp.state("2001:db8::3")->counts.at("*") == 1);
    CHECK(sp.pick({"nosuch", "a"}, "*", t).pool == "a");
    sp.configure({src("2001:db8::3", "pool=b warmup=1")});
    CHECK(sp.pick({"a"}, "*", t).source == nullptr);
    CHECK(sp.pick({"a"}, "*", t).wait_until == 0);
    CHECK(sp.pick({"b"}, "*", t).source == nullptr);  // its one message for today is spent
}
