// Unit tests for queue-manager/admin: command parsing (untrusted text from any local user), filter
// matching, and listing formats (JSON escaping of hostile bytes).
#include <doctest/doctest.h>

#include "queue-manager/admin.h"

using namespace mta;
using namespace mta::queue;

namespace {
MessageView sample() {
    MessageView v;
    v.msgid = 0x2A;
    v.msg.sender = "Alice@Example.org";
    v.msg.arrival = 1000;
    v.msg.nrcpt = 2;
    RcptView a, b;
    a.index = 0;
    a.rec.addr = "bob@remote.test";
    a.rec.state = RcptState::deferred;
    a.rec.attempts = 2;
    a.rec.last_error = "451 4.3.0 \"later\"\\";
    b.index = 1;
    b.rec.addr = "carol@other.test";
    b.rec.state = RcptState::held;
    v.rcpts = {a, b};
    return v;
}
}  // namespace

TEST_CASE("admin command parsing") {
    AdminCommand c;
    std::string err;
    REQUIRE(parse_admin("list --from a@b --older-than 2h --state held --json", c, err));
    CHECK(c.verb == "list");
    CHECK(c.filter.from == "a@b");
    CHECK(c.filter.older_than == 7200);
    CHECK(c.filter.state == "held");
    CHECK(c.json);
    REQUIRE(parse_admin("show 000000000000002A", c, err));
    CHECK(c.filter.ids == std::vector<uint64_t>{0x2A});
    CHECK_FALSE(parse_admin("show", c, err));
    CHECK_FALSE(parse_admin("show 2A", c, err));
    CHECK_FALSE(parse_admin("delete", c, err));
    CHECK(err.find("--all") != std::string::npos);
    CHECK(parse_admin("delete --all", c, err));
    CHECK(parse_admin("flush", c, err));
    CHECK_FALSE(parse_admin("rm -rf", c, err));
    CHECK_FALSE(parse_admin("list --state nonsense", c, err));
    CHECK_FALSE(parse_admin("list --from", c, err));
    CHECK_FALSE(parse_admin("list --older-than 0", c, err));
    CHECK_FALSE(parse_admin("list\n--json", c, err));
    CHECK_FALSE(parse_admin("", c, err));
    CHECK(parse_admin("list", c, err));
    CHECK_FALSE(c.privileged_only());
    REQUIRE(parse_admin("hold --domain Remote.TEST", c, err));
    CHECK(c.privileged_only());
    CHECK(c.filter.domain == "remote.test");
}

TEST_CASE("stats and suppression commands") {
    AdminCommand c;
    std::string err;
    REQUIRE(parse_admin("stats --json", c, err));
    CHECK(c.json);
    CHECK_FALSE(c.privileged_only());
    CHECK_FALSE(parse_admin("stats 2A", c, err));
    REQUIRE(parse_admin("suppression list --json", c, err));
    CHECK(c.sub == "list");
    CHECK(c.privileged_only());  // the list names other users' recipients
    CHECK_FALSE(parse_admin("suppression", c, err));
    CHECK_FALSE(parse_admin("suppression purge", c, err));
    CHECK_FALSE(parse_admin("suppression list a@b.test", c, err));
    CHECK_FALSE(parse_admin("suppression add", c, err));
    CHECK(err.find("address") != std::string::npos);
    REQUIRE(parse_admin("suppression add Bob@Example.NET carol@example.net --ttl 2d", c, err));
    CHECK(c.addresses == std::vector<std::string>{"bob@example.net", "carol@example.net"});
    CHECK(c.ttl == 2 * 86400);
    CHECK_FALSE(parse_admin("suppression remove a@b.test --ttl 2d", c, err));  // --ttl only with add
    CHECK_FALSE(parse_admin("suppression add a@b.test --ttl 0", c, err));
    CHECK_FALSE(parse_admin("suppression add nobody", c, err));
    CHECK_FALSE(parse_admin("suppression add @b.test", c, err));
    CHECK_FALSE(parse_admin("suppression add a@", c, err));
    CHECK_FALSE(parse_admin("suppression add " + std::string(400, 'a') + "@b.test", c, err));
    CHECK_FALSE(parse_admin("suppression add a\xff@b.test", c, err));
    REQUIRE(parse_admin("suppression remove a@b.test", c, err));
    CHECK(c.sub == "remove");
}

TEST_CASE("warmup commands") {
    AdminCommand c;
    std::string err;
    REQUIRE(parse_admin("warmup", c, err));
    CHECK(c.sub == "list");
    CHECK_FALSE(c.privileged_only());
    REQUIRE(parse_admin("warmup list --json", c, err));
    CHECK(c.json);
    REQUIRE(parse_admin("warmup set 2001:DB8::1 --first-used 2026-11-30", c, err));
    CHECK(c.privileged_only());
    CHECK(c.addresses == std::vector<std::string>{"2001:db8::1"});
    uint64_t day = 0;
    REQUIRE(parse_utc_date("2026-11-30", day));
    CHECK(c.first_day == day);
    CHECK_FALSE(parse_admin("warmup set 192.0.2.1", c, err));
    CHECK_FALSE(parse_admin("warmup set --first-used 2026-11-30", c, err));
    CHECK_FALSE(parse_admin("warmup set mail.example --first-used 2026-11-30", c, err));
    CHECK_FALSE(parse_admin("warmup set 192.0.2.1 --first-used yesterday", c, err));
    CHECK_FALSE(parse_admin("warmup set 192.0.2.1 192.0.2.2 --first-used 2026-11-30", c, err));
    CHECK_FALSE(parse_admin("warmup list 192.0.2.1", c, err));
    CHECK_FALSE(parse_admin("warmup set 192.0.2.1 --first-used 2026-11-30 --json", c, err));

    SourcePools sp;
    SourceAddress a;
    REQUIRE(parse_source_address("192.0.2.1", "pool=new helo=out.example.test warmup=5,10", a, err));
    sp.configure({a});
    uint64_t now = (day + 1) * 86400 + 60;
    sp.set_first_day("192.0.2.1", day);
    sp.sent("192.0.2.1", ".example.com", now);
    std::string text = format_warmup_text(sp, now);
    CHECK(text.find("192.0.2.1  pool new  helo out.example.test") != std::string::npos);
    CHECK(text.find("first used 2026-11-30, day 2, warming up: 10 per destination class today") != std::string::npos);
    CHECK(text.find("sent today: .example.com=1") != std::string::npos);
    std::string json = format_warmup_json(sp, now);
    CHECK(json.find("\"day\":2,\"schedule\":[5,10],\"limit_today\":10,\"sent_today\":{\".example.com\":1}") !=
          std::string::npos);
    CHECK(format_warmup_text(SourcePools{}, now).find("No source addresses") == 0);
}

TEST_CASE("tlsrpt commands are the admin's") {
    AdminCommand c;
    std::string err;
    REQUIRE(parse_admin("tlsrpt", c, err));
    CHECK(c.sub == "list");
    CHECK(c.privileged_only());  // the list names the domains we sent mail to
    REQUIRE(parse_admin("tlsrpt list --json", c, err));
    CHECK(c.json);
    REQUIRE(parse_admin("tlsrpt send", c, err));
    CHECK(c.sub == "send");
    CHECK_FALSE(parse_admin("tlsrpt send --json", c, err));
    CHECK_FALSE(parse_admin("tlsrpt purge", c, err));
}

TEST_CASE("stats and suppression formats") {
    ClassCounts cc;
    cc.since = 1000;
    cc.deferred[uint8_t(BounceClass::rate_limited)] = 3;
    cc.bounced[uint8_t(BounceClass::bad_mailbox)] = 2;
    std::string t = format_stats_text(cc, 1, 1060);
    CHECK(t.find("rate_limited") != std::string::npos);
    CHECK(t.find("1 entry") != std::string::npos);
    std::string j = format_stats_json(cc, 1, 1060);
    CHECK(j.find("\"rate_limited\":{\"deferred\":3,\"bounced\":0}") != std::string::npos);
    CHECK(j.find("\"bad_mailbox\":{\"deferred\":0,\"bounced\":2}") != std::string::npos);
    CHECK(j.find("\"none\"") == std::string::npos);
    CHECK(j.find("\"suppressed\":1}") != std::string::npos);
    std::vector<SuppressionView> list{{"bob@example.net", SuppressionRecord{1, 1000, 2000, 0x2A, "said: 550 5.1.1 \"x\""}},
                                      {"eve@example.net", SuppressionRecord{0, 1000, 2000, 0, "added by uid 0"}}};
    std::string lt = format_suppression_text(list);
    CHECK(lt.find("bob@example.net  [bad_mailbox") != std::string::npos);
    CHECK(lt.find("added by admin") != std::string::npos);
    CHECK(lt.find("2 suppressed addresses") != std::string::npos);
    std::string lj = format_suppression_json(list, 1500);
    CHECK(lj.find("\"class\":\"bad_mailbox\"") != std::string::npos);
    CHECK(lj.find("\"class\":null") != std::string::npos);
    CHECK(lj.find("\"queue_id\":null") != std::string::npos);
    CHECK(lj.find("\\\"x\\\"") != std::string::npos);  // the reason's quotes are escaped
    CHECK(format_suppression_text({}) == "Suppression list is empty\n");
}

TEST_CASE("filters") {
    MessageView v = sample();
    AdminFilter f;
    CHECK(matches(f, v, 5000));
    f.from = "alice@example.org";
    CHECK(matches(f, v, 5000));
    f.from = "<>";
    CHECK_FALSE(matches(f, v, 5000));
    f = AdminFilter{};
    f.to = "carol@other.test";
    CHECK(matches(f, v, 5000));
    f.to = "dave@other.test";
    CHECK_FALSE(matches(f, v, 5000));
    f = AdminFilter{};
    f.domain = "remote.test";
    f.state = "deferred";
    CHECK(matches(f, v, 5000));
    f.state = "held";
    CHECK_FALSE(matches(f, v, 5000));  // the held recipient is in another domain
    f = AdminFilter{};
    f.older_than = 3600;
    CHECK_FALSE(matches(f, v, 2000));
    CHECK(matches(f, v, 5000));
    f = AdminFilter{};
    f.ids = {0x2B};
    CHECK_FALSE(matches(f, v, 5000));
    f.state = "corrupt";
    f.ids.clear();
    CHECK_FALSE(matches(f, v, 5000));
    v.msg.state = MessageState::corrupt;
    CHECK(matches(f, v, 5000));
}

TEST_CASE("state names") {
    MessageView v = sample();
    CHECK(message_state_name(v) == "deferred");
    v.rcpts[1].inflight = true;
    CHECK(rcpt_state_name(v.rcpts[1]) == "in-flight");
    CHECK(message_state_name(v) == "in-flight");
    v.msg.state = MessageState::corrupt;
    CHECK(message_state_name(v) == "corrupt");
}

TEST_CASE("json strings escape everything hostile and keep valid UTF-8") {
    CHECK(json_string("a\"b\\c") == "\"a\\\"b\\\\c\"");
    CHECK(json_string("\r\n\x01") == "\"\\u000d\\u000a\\u0001\"");
    CHECK(json_string("caf\xc3\xa9") == "\"caf\xc3\xa9\"");
    CHECK(json_string("\xff") == "\"\\ufffd\"");
    CHECK(json_string("\xc3") == "\"\\ufffd\"");
    CHECK(json_string("\xed\xa0\x80") == "\"\\ufffd\\ufffd\\ufffd\"");  // surrogate
}

TEST_CASE("listings") {
    std::vector<MessageView> none;
    CHECK(format_list_text(none, 0) == "Mail queue is empty\n");
    std::vector<MessageView> one = {sample()};
    std::string t = format_list_text(one, 5000);
    CHECK(t.find("000000000000002A") != std::string::npos);
    CHECK(t.find("bob@remote.test  [deferred, 2 attempts") != std::string::npos);
    CHECK(t.find("1 Request, 2 Recipients") != std::string::npos);
    std::string j = format_list_json(one, 5000, 0);
    CHECK(j.find("\"id\":\"000000000000002A\"") != std::string::npos);
    CHECK(j.find("\"last_error\":\"451 4.3.0 \\\"later\\\"\\\\\"") != std::string::npos);
    CHECK(j.find("\"state\":\"held\"") != std::string::npos);
    MessageView v = sample();
    v.headers = "Subject: hi\r\n\tthere\r\n";
    CHECK(format_show_text(v, 5000).find("  Subject: hi\n  \tthere\n") != std::string::npos);
    CHECK(format_show_json(v, 5000).find("\"headers\":\"Subject: hi\\u000d\\u000a") != std::string::npos);
}
