// Unit tests for common/routing: local domains to mta-local or LMTP, the rest to mta-smtp.
#include <doctest/doctest.h>

#include <map>

#include "common/routing.h"
#include "common/table.h"
#include "smtp-client/lmtp_nexthop.h"
#include "smtp-client/smtp_dane.h"
#include "smtp-client/smtp_nexthop.h"

using namespace mta;

TEST_CASE("routing: maildir, lmtp and remote domains") {
    Config c;
    std::vector<ConfigError> errors;
    REQUIRE(parse_config("local_domains = example.org localhost\n", "t", c, errors));
    auto r = route(c, "example.org");
    CHECK(r.role == "local");
    CHECK(r.nexthop == "example.org");
    CHECK(route(c, "").role == "local");
    r = route(c, "remote.example");
    CHECK(r.role == "smtp");
    CHECK(r.nexthop == "remote.example");

    REQUIRE(parse_config("local_domains = example.org\nlocal_transport = lmtp:[127.0.0.1]:24\n", "t", c, errors));
    r = route(c, "example.org");
    CHECK(r.role == "smtp");
    CHECK(r.nexthop == "lmtp:[127.0.0.1]:24");
    CHECK(route(c, "remote.example").nexthop == "remote.example");

    REQUIRE(parse_config("local_transport = lmtp:unix:/run/dovecot/lmtp\n", "t", c, errors));
    CHECK(route(c, "localhost").nexthop == "lmtp:unix:/run/dovecot/lmtp");
}

TEST_CASE("routing: local_transport syntax is checked") {
    Config c;
    std::vector<ConfigError> errors;
    CHECK_FALSE(parse_config("local_transport = lmtp:127.0.0.1\n", "t", c, errors));
    CHECK_FALSE(parse_config("local_transport = lmtp:unix:relative\n", "t", c, errors));
    CHECK_FALSE(parse_config("local_transport = dovecot\n", "t", c, errors));
    CHECK(parse_config("local_transport = maildir\n", "t", c, errors));
}

TEST_CASE("routing: local_transport accepts exactly the LMTP next hops mta-smtp can use") {
    const std::string long_path = "/" + std::string(106, 'p');  // 107 bytes: the longest sun_path
    const std::string values[] = {
        "lmtp:[127.0.0.1]:24", "lmtp:[::1]:24", "lmtp:[mail.example]:24", "lmtp:[localhost]:24",
        "lmtp:[127.0.0.1]:0", "lmtp:[127.0.0.1]:65536", "lmtp:[127.0.0.1]:", "lmtp:[127.0.0.1]:24x",
        "lmtp:[]:24", "lmtp:unix:/run/lmtp", "lmtp:unix:" + long_path, "lmtp:unix:" + long_path + "p",
        "lmtp:unix:", "lmtp:unix:run/lmtp", "lmtp:127.0.0.1:24",
    };
    for (auto& v : values) {
        Config c;
        std::vector<ConfigError> errors;
        smtp::Target t;
        std::string err;
        INFO(v);
        CHECK(parse_config("local_transport = " + v + "\n", "t", c, errors) == smtp::parse_lmtp_nexthop(v, t, err));
    }
    Config c;
    std::vector<ConfigError> errors;
    CHECK_FALSE(parse_config("\nlocal_transport = lmtp:[mail.example]:24\n", "mta.conf", c, errors));
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].line == 2);
    CHECK(errors[0].str().find("must be an IP address") != std::string::npos);
}

// transport_map and smtp_tls_policy_map (issue 4): lookup order, value parsing, precedence.
namespace {
TableLookup map_of(std::map<std::string, std::string> m) {
    return [m](std::string_view k) -> std::optional<std::string> {
        auto it = m.find(std::string(k));
        if (it == m.end()) return std::nullopt;
        return it->second;
    };
}
}  // namespace

TEST_CASE("routing: domain table lookup order is exact, then .parent from the longest, then *") {
    auto t = map_of({{"a.b.example", "exact"}, {".b.example", "b"}, {".example", "top"}, {"*", "any"}});
    CHECK(lookup_domain(t, "a.b.example")->second == "exact");
    CHECK(lookup_domain(t, "x.a.b.example")->first == ".b.example");
    CHECK(lookup_domain(t, "b.example")->first == ".example");  // ".b.example" matches subdomains only
    CHECK(lookup_domain(t, "other.example")->second == "top");
    CHECK(lookup_domain(t, "example")->second == "any");
    CHECK(lookup_domain(t, "elsewhere.org")->first == "*");
    CHECK_FALSE(lookup_domain(t, "elsewhere.org", false));
    CHECK_FALSE(lookup_domain(TableLookup{}, "example"));
    CHECK(lookup_domain(map_of({{"[192.0.2.1]", "lit"}}), "[192.0.2.1]")->second == "lit");
}

TEST_CASE("routing: transport_map values") {
    TransportEntry e;
    std::string err;
    for (const char* ok : {"smtp:", "smtp:[127.0.0.1]:2525", "smtp:[::1]:25", "smtp:[ipv6:::1]", "smtp:relay.example",
                           "smtp:relay.example:587", "smtp:[relay.example]", "SMTP:[Relay.Example]:25",
                           "lmtp:unix:/run/dovecot/lmtp", "lmtp:[127.0.0.1]:24", "local:",
                           "error:5.1.1 no such domain here", "error:5.7.1", "retry:4.3.2 maintenance"}) {
        INFO(ok);
        CHECK(parse_transport(ok, e, err));
    }
    for (const char* bad : {"smtp", "relay.example", "uucp:host", "smtp:[127.0.0.1", "smtp:[127.0.0.1]:0",
                            "smtp:[127.0.0.1]:x", "smtp:bad_host!", "smtp:host:70000", "lmtp:[mail.example]:24",
                            "lmtp:unix:relative", "local:somewhere", "error:4.1.1 wrong class", "error:no code",
                            "error:5.1 short", "error:5.1111.1 long", "retry:5.3.2 wrong class", "error:5.1.1\x01"}) {
        INFO(bad);
        CHECK_FALSE(parse_transport(bad, e, err));
    }
    REQUIRE(parse_transport("error:5.1.1 gone away", e, err));
    CHECK(e.kind == TransportEntry::error);
    CHECK(e.text == "5.1.1 gone away");
    REQUIRE(parse_transport("lmtp:[127.0.0.1]:24", e, err));
    CHECK(e.kind == TransportEntry::lmtp);
    CHECK(e.nexthop == "lmtp:[127.0.0.1]:24");
    CHECK(valid_domain_key("example.org"));
    CHECK(valid_domain_key(".example.org"));
    CHECK(valid_domain_key("*"));
    CHECK_FALSE(valid_domain_key(".*"));
    CHECK_FALSE(valid_domain_key("."));
    CHECK_FALSE(valid_domain_key("exa mple"));
}

TEST_CASE("routing: transport_map SMTP next hops are the ones mta-smtp accepts") {
    for (const char* v : {"[127.0.0.1]:2525", "[::1]:25", "[ipv6:::1]", "relay.example", "relay.example:587",
                          "[relay.example]", "[127.0.0.1", "[127.0.0.1]:0", "bad_host!", "host:70000", "[]:25", ":25"}) {
        INFO(v);
        TransportEntry e;
        std::string err, err2;
        CHECK(parse_transport(std::string("smtp:") + v, e, err) ==
              smtp::choose_destination(std::string("smtp:") + v, "", 25, err2).has_value());
    }
    // And "smtp:DEST" ignores relayhost, where a bare domain does not.
    std::string err;
    auto d = smtp::choose_destination("smtp:relay.example:587", "[10.0.0.1]:25", 25, err);
    REQUIRE(d);
    CHECK(d->mx);
    CHECK(d->host == "relay.example");
    CHECK(d->port == 587);
    d = smtp::choose_destination("smtp:[127.0.0.9]", "[10.0.0.1]:25", 2525, err);
    REQUIRE(d);
    CHECK_FALSE(d->mx);
    CHECK(d->port == 2525);
    CHECK(smtp::choose_destination("example.org", "[10.0.0.1]:25", 25, err)->host == "10.0.0.1");
}

TEST_CASE("routing: transport_map precedence over relayhost, MX and local delivery") {
    Config c;
    std::vector<ConfigError> errors;
    REQUIRE(parse_config("local_domains = example.org other.org\nrelayhost = [10.0.0.1]:25\n", "t", c, errors));
    RouteTables t;
    t.transport = map_of({{"fixed.example", "smtp:[127.0.0.5]:2525"}, {".sub.example", "smtp:"},
                          {"mx.example", "smtp:mail.example"}, {"example.org", "lmtp:[127.0.0.1]:24"},
                          {"gone.example", "error:5.1.2 domain retired"}, {"busy.example", "retry:4.3.2 maintenance"},
                          {"mine.example", "local:"}, {"*", "smtp:[127.0.0.9]"}, {"broken.example", "nonsense"}});
    auto r = route(c, "fixed.example", t);
    CHECK(r.role == "smtp");
    CHECK(r.nexthop == "smtp:[127.0.0.5]:2525");
    CHECK(r.transport == "fixed.example smtp:[127.0.0.5]:2525");
    CHECK(route(c, "a.sub.example", t).nexthop == "smtp:a.sub.example");  // MX of the recipient domain
    CHECK(route(c, "mx.example", t).nexthop == "smtp:mail.example");
    CHECK(route(c, "example.org", t).nexthop == "lmtp:[127.0.0.1]:24");
    r = route(c, "other.org", t);  // local domain: "*" does not take it away from local delivery
    CHECK(r.role == "local");
    CHECK(r.transport == "default");
    CHECK(route(c, "", t).role == "local");
    r = route(c, "gone.example", t);
    CHECK(r.role == "error");
    CHECK(r.text == "5.1.2 domain retired");
    r = route(c, "busy.example", t);
    CHECK(r.role == "retry");
    CHECK(r.text == "4.3.2 maintenance");
    r = route(c, "mine.example", t);
    CHECK(r.role == "local");
    CHECK(r.nexthop == "mine.example");
    CHECK(route(c, "anything.example", t).nexthop == "smtp:[127.0.0.9]");
    CHECK(route(c, "anything.example", t).group.empty());  // a transport_map next hop is its own group
    r = route(c, "broken.example", t);
    CHECK(r.role == "retry");
    CHECK(r.text.rfind("4.3.5 ", 0) == 0);
    // Without an entry, relayhost still applies in mta-smtp: the nexthop stays the plain domain, and
    // the relayhost groups every such domain into one scheduling destination.
    t.transport = map_of({});
    CHECK(route(c, "remote.example", t).nexthop == "remote.example");
    CHECK(route(c, "remote.example", t).group == "[10.0.0.1]:25");
    CHECK(route(c, "example.org", t).group.empty());    // local
}

TEST_CASE("routing: an unusable table defers, never falls back to MX") {
    Config c;
    std::vector<ConfigError> errors;
    REQUIRE(parse_config("local_domains = localhost\n", "t", c, errors));
    RouteTables t;
    t.transport_error = "no usable copy";
    auto r = route(c, "remote.example", t);
    CHECK(r.role == "retry");
    CHECK(r.text.rfind("4.3.0 transport_map unavailable", 0) == 0);
    CHECK(route(c, "localhost", t).role == "retry");  // a local domain might have an entry too
    CHECK(route(c, "", t).role == "local");
    RouteTables p;
    p.tls_policy_error = "no usable copy";
    r = route(c, "remote.example", p);
    CHECK(r.role == "retry");
    CHECK(r.text.rfind("4.3.0 smtp_tls_policy_map unavailable", 0) == 0);
    CHECK(route(c, "localhost", p).role == "local");  // Maildir delivery needs no TLS policy
}

TEST_CASE("routing: smtp_tls_policy_map picks the level per destination") {
    Config c;
    std::vector<ConfigError> errors;
    REQUIRE(parse_config("local_domains = localhost\n", "t", c, errors));
    RouteTables t;
    t.tls_policy = map_of({{"secure.example", "encrypt"}, {".corp.example", "dane"}, {"*", "may"}, {"bad.example", "maybe"}});
    CHECK(route(c, "secure.example", t).tls_level == "encrypt");
    CHECK(route(c, "mx.corp.example", t).tls_level == "dane");
    CHECK(route(c, "other.example", t).tls_level == "may");
    CHECK(route(c, "bad.example", t).role == "retry");
    CHECK(route(c, "localhost", t).tls_level.empty());
    for (const char* lvl : {"none", "may", "encrypt", "dane", "mta-sts"}) {
        smtp::TlsLevel l;
        INFO(lvl);
        CHECK(valid_tls_policy_level(lvl));
        CHECK(smtp::parse_tls_level(lvl, l));
    }
    CHECK_FALSE(valid_tls_policy_level("maybe"));
    CHECK_FALSE(valid_tls_policy_level(""));
}

TEST_CASE("routing: mtamap validates transport and tls_policy sources with line numbers") {
    table::Entries out;
    std::vector<std::string> errors;
    auto nohash = [](const std::string&) { return std::string(); };
    CHECK(table::parse_source("# t\nExample.COM smtp:[127.0.0.1]:25\n.sub.example local:\n* error:5.7.1 go away now\n",
                              table::Kind::transport, out, errors, nohash));
    REQUIRE(out.size() == 3);
    CHECK(out[0].first == "example.com");
    CHECK(out[2].second == "error:5.7.1 go away now");
    out.clear();
    CHECK_FALSE(table::parse_source("ok.example smtp:\nbad.example smtp:[x\n..x local:\nz.example\n",
                                    table::Kind::transport, out, errors, nohash));
    REQUIRE(errors.size() == 3);
    CHECK(errors[0].rfind("line 2: ", 0) == 0);
    CHECK(errors[1].rfind("line 3: ", 0) == 0);
    CHECK(errors[2].rfind("line 4: ", 0) == 0);
    errors.clear();
    out.clear();
    CHECK(table::parse_source("a.example encrypt\n* may\n", table::Kind::tls_policy, out, errors, nohash));
    CHECK_FALSE(table::parse_source("a.example secure\n", table::Kind::tls_policy, out, errors, nohash));
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].find("line 1: bad TLS level") == 0);
    CHECK(table::parse_kind("transport") == table::Kind::transport);
    CHECK(table::parse_kind("tls_policy") == table::Kind::tls_policy);
}

TEST_CASE("routing: destination_policy by next hop, then by domain; a bad entry defers") {
    Config c;
    std::vector<ConfigError> errors;
    REQUIRE(parse_config("local_domains = localhost\n", "t", c, errors));
    RouteTables t;
    t.destination_policy = map_of({{"slow.example", "max_per_minute=5"}, {".example", "max_connections=2"},
                                   {"[10.0.0.9]:25", "max_per_hour=100"}, {"bad.example", "speed=9"}});
    Route r = route(c, "slow.example", t);
    CHECK(r.policy.max_per_minute == 5);
    CHECK(r.policy.key == "slow.example");
    r = route(c, "sub.other.example", t);
    CHECK(r.policy.max_connections == 2);
    CHECK(r.policy.key == ".example");
    CHECK(route(c, "elsewhere.test", t).policy.key.empty());
    CHECK(route(c, "localhost", t).policy.key.empty());  // local delivery is not shaped
    CHECK(route(c, "bad.example", t).role == "retry");
    t.transport = map_of({{"hop.test", "smtp:[10.0.0.9]:25"}});
    r = route(c, "hop.test", t);
    CHECK(r.policy.max_per_hour == 100);  // the transport target's entry
    REQUIRE(parse_config("local_domains = localhost\nrelayhost = [10.0.0.9]:25\n", "t", c, errors));
    t.transport = {};
    CHECK(route(c, "slow.example", t).policy.key == "[10.0.0.9]:25");  // the relayhost's budget first
    t.destination_policy_error = "no usable copy";
    CHECK(route(c, "slow.example", t).role == "retry");
}

TEST_CASE("routing: destination_policy mx: keys give the domains of one provider one destination") {
    Config c;
    std::vector<ConfigError> errors;
    REQUIRE(parse_config("local_domains = localhost\n", "t", c, errors));
    RouteTables t;
    t.destination_policy = map_of({{"mx:.provider.test", "max_per_minute=10"}, {"own.test", "max_per_minute=3"},
                                   {"mx:mx.exact.test", "max_connections=1"}, {"*", "max_connections=4"}});
    std::map<std::string, std::string> mx = {{"a.test", "MX1.provider.test"}, {"b.test", "mx2.provider.test"},
                                             {"own.test", "mx1.provider.test"}, {"c.test", "mx.exact.test"}};
    t.known_mx = [&](std::string_view d) { auto it = mx.find(std::string(d)); return it == mx.end() ? "" : it->second; };
    Route a = route(c, "a.test", t), b = route(c, "b.test", t);
    CHECK(a.policy.key == "mx:.provider.test");
    CHECK(a.group == "mx:.provider.test");  // one scheduling destination, one budget
    CHECK(b.group == "mx:.provider.test");
    CHECK(a.nexthop == "a.test");            // each still delivered to its own MX set
    CHECK(route(c, "own.test", t).policy.key == "own.test");  // a domain's own entry wins
    CHECK(route(c, "own.test", t).group.empty());
    CHECK(route(c, "c.test", t).policy.key == "mx:mx.exact.test");
    CHECK(route(c, "unknown.test", t).policy.key == "*");       // MX not learned yet
    t.transport = map_of({{"b.test", "smtp:[10.0.0.1]"}});
    CHECK(route(c, "b.test", t).group.empty());                 // not MX routing: no mx: key
    REQUIRE(parse_config("local_domains = localhost\nrelayhost = [10.0.0.9]\n", "t", c, errors));
    CHECK(route(c, "a.test", t).group == "[10.0.0.9]");         // the relayhost's destination
    CHECK(valid_policy_key("mx:.provider.test"));
    CHECK(valid_policy_key("mx:mx1.provider.test"));
    CHECK_FALSE(valid_policy_key("mx:"));
    CHECK_FALSE(valid_policy_key("mx:*"));
    CHECK_FALSE(valid_policy_key("mx:bad host"));
}
