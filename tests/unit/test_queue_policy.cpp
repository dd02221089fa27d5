// Unit tests for queue-manager/policy: backoff doubling, cap, jitter bounds, expiry and state changes.
#include <doctest/doctest.h>

#include "queue-manager/bounce_class.h"
#include "queue-manager/policy.h"

using namespace mta::queue;

namespace {
RetryPolicy policy() { return RetryPolicy{300, 3600, 5 * 86400, 86400}; }
}  // namespace

TEST_CASE("backoff doubles from the minimum and stops at the maximum") {
    RetryPolicy p = policy();
    CHECK(backoff_delay(1, p, 0) == 300);
    CHECK(backoff_delay(2, p, 0) == 600);
    CHECK(backoff_delay(3, p, 0) == 1200);
    CHECK(backoff_delay(4, p, 0) == 2400);
    CHECK(backoff_delay(5, p, 0) == 3600);
    CHECK(backoff_delay(1000000, p, 0) == 3600);
    CHECK(backoff_delay(0, p, 0) == 300);
}

TEST_CASE("jitter stays within ten percent") {
    RetryPolicy p = policy();
    CHECK(backoff_delay(1, p, 1.0) == 330);
    CHECK(backoff_delay(1, p, -1.0) == 270);
    CHECK(backoff_delay(5, p, 5.0) == 3960);  // clamped
    for (double j = -1; j <= 1; j += 0.05) {
        uint64_t d = backoff_delay(2, p, j);
        CHECK(d >= 540);
        CHECK(d <= 660);
    }
}

TEST_CASE("a deferral schedules the next attempt from the injected clock") {
    RetryPolicy p = policy();
    MessageRecord m;
    m.sender = "a@b";
    m.arrival = 1000;
    RecipientRecord r;
    r.addr = "x@y";
    CHECK(apply_attempt(r, m, Outcome::deferred, "451 busy", p, 2000, 0) == Outcome::deferred);
    CHECK(r.state == RcptState::deferred);
    CHECK(r.attempts == 1);
    CHECK(r.next_attempt == 2300);
    CHECK(r.last_attempt == 2000);
    CHECK(r.last_error == "451 busy");
    CHECK(apply_attempt(r, m, Outcome::deferred, "451\r\nagain", p, 2300, 0) == Outcome::deferred);
    CHECK(r.next_attempt == 2900);
    CHECK(r.last_error == "451  again");
}

TEST_CASE("expired mail bounces on its next deferral; the null sender expires sooner") {
    RetryPolicy p = policy();
    MessageRecord m;
    m.sender = "a@b";
    m.arrival = 1000;
    RecipientRecord r;
    r.addr = "x@y";
    uint64_t day = 86400;
    CHECK(apply_attempt(r, m, Outcome::deferred, "451 x", p, 1000 + 2 * day, 0) == Outcome::deferred);
    CHECK(apply_attempt(r, m, Outcome::deferred, "451 x", p, 1000 + 5 * day, 0) == Outcome::bounced);
    CHECK(r.state == RcptState::bounced);
    CHECK(r.last_error == "message expired: 451 x");

    MessageRecord bounce = m;
    bounce.sender.clear();
    RecipientRecord r2;
    r2.addr = "x@y";
    CHECK(expired(bounce, p, 1000 + day));
    CHECK_FALSE(expired(bounce, p, 999 + day));
    CHECK(apply_attempt(r2, bounce, Outcome::deferred, "451 x", p, 1000 + day, 0) == Outcome::bounced);
}

TEST_CASE("a permanent failure bounces at once") {
    RetryPolicy p = policy();
    MessageRecord m;
    m.arrival = 1000;
    m.sender = "a@b";
    RecipientRecord r;
    r.addr = "x@y";
    CHECK(apply_attempt(r, m, Outcome::bounced, "550 no such user", p, 1001, 0) == Outcome::bounced);
    CHECK(r.state == RcptState::bounced);
    CHECK(r.last_error == "550 no such user");
}

TEST_CASE("every failed attempt records its bounce class, an expiry as permanent") {
    RetryPolicy p = policy();
    MessageRecord m;
    m.arrival = 1000;
    m.sender = "a@b";
    RecipientRecord r;
    r.addr = "x@y";
    apply_attempt(r, m, Outcome::deferred, "mx[192.0.2.1] said: 450 4.7.28 rate limited", p, 1001, 0);
    CHECK(BounceClass(r.last_class) == BounceClass::rate_limited);
    apply_attempt(r, m, Outcome::deferred, "4.4.1 destination mx is not reachable", p, 1002, 0);
    CHECK(BounceClass(r.last_class) == BounceClass::other_transient);
    CHECK(apply_attempt(r, m, Outcome::deferred, "4.4.1 destination mx is not reachable", p, 1000 + 6 * 86400, 0) ==
          Outcome::bounced);
    CHECK(BounceClass(r.last_class) == BounceClass::other_permanent);
    RecipientRecord b;
    b.addr = "x@y";
    apply_attempt(b, m, Outcome::bounced, "mx[192.0.2.1] said: 550 5.1.1 no such user", p, 1001, 0);
    CHECK(BounceClass(b.last_class) == BounceClass::bad_mailbox);
}
