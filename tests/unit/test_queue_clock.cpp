// Unit tests for queue-manager/clock: the queue's time across a wall clock step made while the queue was
// stopped (the saved anchor), and showing queue times on the wall clock. Steps while it runs are tested
// with libfaketime in tests/integration/test_clock_step.py.
#include <doctest/doctest.h>

#include <ctime>
#include <fstream>
#include <string>

#include "queue-manager/clock.h"

using namespace mta::queue;

namespace {

std::string boot_id() {
    std::ifstream f("/proc/sys/kernel/random/boot_id");
    std::string id;
    std::getline(f, id);
    return id;
}

void readings(long long& wall, long long& boot) {
    struct timespec w, b;
    clock_gettime(CLOCK_REALTIME, &w);
    clock_gettime(CLOCK_BOOTTIME, &b);
    wall = w.tv_sec;
    boot = b.tv_sec;
}

std::string anchor(const std::string& id, long long wall, long long boot, long long offset) {
    return "v1 " + id + " " + std::to_string(wall) + " " + std::to_string(boot) + " " + std::to_string(offset);
}

}  // namespace

TEST_CASE("queue time: a step while stopped, in the same boot, goes into the offset") {
    long long wall, boot;
    readings(wall, boot);
    SUBCASE("the wall clock went a day forward") {
        QueueTime t;
        // Saved 100 s ago by the boot clock, but the wall clock moved 86400 s more since.
        REQUIRE(t.restore(anchor(boot_id(), wall - 100 - 86400, boot - 100, 0)));
        CHECK(t.offset() >= 86400 - 2);
        CHECK(t.offset() <= 86400 + 2);
        CHECK(t.take_step() == t.offset());
        CHECK(t.take_step() == 0);
        uint64_t q = t.now();
        CHECK(q + 86400 <= uint64_t(wall) + 4);
        CHECK(q + 86400 + 4 >= uint64_t(wall));
    }
    SUBCASE("the wall clock went a day back, on top of an earlier offset") {
        QueueTime t;
        REQUIRE(t.restore(anchor(boot_id(), wall - 100 + 86400, boot - 100, 50)));
        CHECK(t.offset() >= -86400 + 50 - 2);
        CHECK(t.offset() <= -86400 + 50 + 2);
    }
    SUBCASE("no step: the offset is kept") {
        QueueTime t;
        REQUIRE(t.restore(anchor(boot_id(), wall - 100, boot - 100, -7)));
        CHECK(t.offset() == -7);
        CHECK(t.take_step() == 0);
    }
}

TEST_CASE("queue time: after a reboot the offset is kept; garbage is refused") {
    long long wall, boot;
    readings(wall, boot);
    QueueTime t;
    REQUIRE(t.restore(anchor("00000000-0000-0000-0000-000000000000", wall - 86400 * 3, boot + 999999, 123)));
    CHECK(t.offset() == 123);
    QueueTime u;
    CHECK_FALSE(u.restore("v2 something"));
    CHECK_FALSE(u.restore(""));
    CHECK(u.offset() == 0);
}

TEST_CASE("queue time: the anchor round-trips and is given only when it changed") {
    QueueTime t;
    std::string a = t.anchor();
    CHECK(a.rfind("v1 ", 0) == 0);
    CHECK(t.anchor().empty());  // nothing changed since
    QueueTime u;
    REQUIRE(u.restore(a));
    CHECK(u.offset() == 0);
    CHECK_FALSE(u.anchor().empty());  // a restored clock saves its new readings once
}

TEST_CASE("Clock::shown and from_wall add and take the offset; 0 stays never") {
    Clock c{[] { return uint64_t(5000); }, [] { return 0.0; }, [] { return int64_t(-3600); }, {}};
    CHECK(c.shown(5000) == 1400);
    CHECK(c.shown(0) == 0);
    CHECK(c.from_wall(1400) == 5000);
    Clock plain{[] { return uint64_t(5000); }, [] { return 0.0; }, {}, {}};
    CHECK(plain.wall_offset() == 0);
    CHECK(plain.shown(5000) == 5000);
}
