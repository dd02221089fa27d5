// mtaqueue why: each state and each rule a recipient can be held by, from records and the scheduler's view.
#include <doctest/doctest.h>

#include "queue-manager/bounce_class.h"
#include "queue-manager/why.h"

using namespace mta;
using namespace mta::queue;

namespace {

constexpr uint64_t kNow = 1790000000;

MessageView message(std::vector<RecipientRecord> rcpts) {
    MessageView v;
    v.msgid = 0x2A;
    v.msg.sender = "alice@example.org";
    v.msg.arrival = kNow - 3600;
    v.msg.nrcpt = uint32_t(rcpts.size());
    for (std::size_t i = 0; i < rcpts.size(); i++) v.rcpts.push_back(RcptView{uint32_t(i), rcpts[i], false});
    return v;
}

RecipientRecord rcpt(RcptState st, uint32_t attempts, uint64_t next, std::string error = "", uint8_t cls = 0) {
    RecipientRecord r;
    r.addr = "bob@example.net";
    r.state = st;
    r.attempts = attempts;
    r.next_attempt = next;
    r.last_attempt = attempts ? kNow - 100 : 0;
    r.last_error = std::move(error);
    r.last_class = cls;
    return r;
}

WhyContext context(DestinationView d = {}) {
    WhyContext c;
    c.now = kNow;
    c.policy.minimal_backoff = 300;
    c.policy.maximal_backoff = 3600;
    c.destination = [d](const std::string&) { return d; };
    return c;
}

RcptWhy why_of(const RecipientRecord& r, const WhyContext& c, bool inflight = false, std::string hold_reason = "") {
    MessageView v = message({r});
    v.rcpts[0].inflight = inflight;
    v.msg.hold_reason = std::move(hold_reason);
    return explain(v, v.rcpts[0], c);
}

}  // namespace

TEST_CASE("why: in flight, held by an admin or on arrival, bounced") {
    RcptWhy w = why_of(rcpt(RcptState::deferred, 1, kNow + 60), context(), true);
    CHECK(w.rule == "in-flight");
    RecipientRecord held = rcpt(RcptState::held, 0, 0);
    held.held_by = 0;
    held.held_at = kNow - 50;
    w = why_of(held, context());
    CHECK(w.rule == "held");
    CHECK(w.detail.find("held by an admin (uid 0, ") != std::string::npos);
    CHECK(w.detail.find("mtaqueue release 000000000000002A") != std::string::npos);
    w = why_of(rcpt(RcptState::held, 0, 0), context(), false, "DMARC policy quarantine for example.org");
    CHECK(w.rule == "held-on-arrival");
    CHECK(w.detail.find("DMARC policy quarantine") != std::string::npos);
    w = why_of(rcpt(RcptState::bounced, 1, 0, "mx said: 550 5.1.1 no such user", 1), context());
    CHECK(w.rule == "bounced");
    CHECK(w.detail.find("550 5.1.1 no such user") != std::string::npos);
}

TEST_CASE("why: back-off step N, shaping, warm-up, TLS policy, a dead destination") {
    RcptWhy w = why_of(rcpt(RcptState::deferred, 3, kNow + 900, "mx[192.0.2.1] said: 451 4.3.0 later", 8), context());
    CHECK(w.rule == "backoff");
    CHECK(w.until == kNow + 900);
    CHECK(w.detail.find("back-off step 3 (minimal_backoff_time 5m, doubling up to maximal_backoff_time 1h)") == 0);
    CHECK(w.detail.find("after the last attempt 3 at ") != std::string::npos);
    CHECK(w.detail.find("451 4.3.0 later") != std::string::npos);
    w = why_of(rcpt(RcptState::queued, 0, kNow + 40,
                    "4.7.0 destination example.net is shaped: max_per_minute=10 (destination_policy example.net)"),
               context());
    CHECK(w.rule == "shaped");
    CHECK(w.detail.find("postponed by traffic shaping (destination example.net is shaped: max_per_minute=10") == 0);
    w = why_of(rcpt(RcptState::queued, 0, kNow + 4000, "4.7.0 warm-up allowance for today used up in source pool new"),
               context());
    CHECK(w.rule == "warm-up");
    w = why_of(rcpt(RcptState::deferred, 1, kNow + 300, "4.7.4 TLS is required, but was not offered by host mx", 7),
               context());
    CHECK(w.rule == "tls-policy");
    DestinationView dead;
    dead.name = "example.net";
    dead.known = true;
    dead.dead_until = kNow + 200;
    dead.dead_error = "4.4.1 connect to mx[192.0.2.1]:25: Connection refused";
    w = why_of(rcpt(RcptState::deferred, 3, kNow + 200, dead.dead_error), context(dead));
    CHECK(w.rule == "destination-dead");
    CHECK(w.detail.find("destination example.net is marked dead until ") == 0);
    w = why_of(rcpt(RcptState::deferred, 3, kNow - 1, dead.dead_error), context(dead));  // due, but dead
    CHECK(w.rule == "destination-dead");
    CHECK(w.until == kNow + 200);
}

TEST_CASE("why: due recipients wait for a delivery slot or the next scan") {
    DestinationView busy;
    busy.name = "example.net";
    busy.known = true;
    busy.inflight = 2;
    busy.window = 2;
    busy.waiting = 7;
    RcptWhy w = why_of(rcpt(RcptState::queued, 0, kNow), context(busy));
    CHECK(w.rule == "concurrency-limit");
    CHECK(w.detail.find("destination example.net has 2 deliveries running") != std::string::npos);
    CHECK(w.detail.find("7 recipients waiting") != std::string::npos);
    busy.inflight = 1;
    CHECK(why_of(rcpt(RcptState::queued, 0, kNow), context(busy)).rule == "due");
    CHECK(why_of(rcpt(RcptState::queued, 0, kNow), context()).rule == "due");
}

TEST_CASE("why: text and JSON forms") {
    MessageView v = message({rcpt(RcptState::deferred, 2, kNow + 600, "mx said: 421 4.7.0 try later", 6)});
    WhyContext c = context();
    std::vector<RcptWhy> w{explain(v, v.rcpts[0], c)};
    std::string text = format_why_text(v, w, c);
    CHECK(text.find("000000000000002A  from <alice@example.org>") == 0);
    CHECK(text.find("<bob@example.net>  deferred  [backoff]") != std::string::npos);
    std::string json = format_why_json(v, w, c);
    CHECK(json.find("\"rule\":\"backoff\"") != std::string::npos);
    CHECK(json.find("\"until\":" + std::to_string(kNow + 600)) != std::string::npos);
    CHECK(json.find("\"held_by\":null") != std::string::npos);
    CHECK(json.find("\"destination\":null") != std::string::npos);
}
