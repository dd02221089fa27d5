// Unit tests for the per-client rate counters (common/rate.h): window start, expiry, independence of keys,
// and that old keys are pruned so memory stays bounded.
#include <doctest/doctest.h>

#include "common/rate.h"

using namespace mta;

TEST_CASE("RateCounter counts per key within a window") {
    RateCounter r(60);
    CHECK(r.count("10.0.0.1", 1000) == 0);
    CHECK(r.hit("10.0.0.1", 1000) == 1);
    CHECK(r.hit("10.0.0.1", 1030) == 2);
    CHECK(r.hit("10.0.0.2", 1030) == 1);  // keys are independent
    CHECK(r.hit("10.0.0.1", 1059) == 3);
    CHECK(r.count("10.0.0.1", 1059) == 3);
    CHECK(r.hit("10.0.0.1", 1060) == 1);  // the window started at 1000: a new one begins
    CHECK(r.count("10.0.0.2", 1090) == 0);
    CHECK(r.hit("10.0.0.1", 900) == 1);   // clock stepped back: never a stuck counter
}

TEST_CASE("RateCounter forgets expired keys") {
    RateCounter r(60);
    for (int i = 0; i < 1000; i++) r.hit("192.0.2." + std::to_string(i), 5000);
    CHECK(r.size() == 1000);
    r.hit("198.51.100.1", 5061);
    CHECK(r.size() == 1);
}

TEST_CASE("RateCounter caps the keys it tracks and fails open past the cap") {
    RateCounter r(60, 3);
    CHECK(r.hit("a", 100) == 1);
    CHECK(r.hit("b", 100) == 1);
    CHECK(r.hit("c", 100) == 1);
    CHECK(r.hit("d", 100) == 1);  // full: not recorded
    CHECK(r.hit("d", 100) == 1);
    CHECK(r.size() == 3);
    CHECK(r.hit("a", 101) == 2);  // known keys keep counting
    CHECK(r.hit("d", 160) == 1);  // the others expired: room again
    CHECK(r.hit("d", 161) == 2);
    CHECK(r.size() == 1);
}
