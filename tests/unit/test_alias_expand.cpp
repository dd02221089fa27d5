// Unit tests for alias and virtual alias expansion: recursion, loops, the caps, catch-alls, case,
// and the build-time checks of table entries.
#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include "common/alias_expand.h"

using namespace mta;
using namespace mta::alias;

namespace {

using Strings = std::vector<std::string>;

Config test_config() {
    Config c;
    std::vector<ConfigError> errors;
    REQUIRE(parse_config("local_domains = localhost example.com\n", "t", c, errors));
    return c;
}

// Keys as mtamap stores them: lower-cased.
Lookup map_lookup(std::map<std::string, std::string> m) {
    return [m = std::move(m)](std::string_view k) -> std::optional<std::string> {
        auto it = m.find(std::string(k));
        if (it == m.end()) return std::nullopt;
        return it->second;
    };
}

Maps aliases_only(std::map<std::string, std::string> a) {
    Maps m;
    m.aliases = map_lookup(std::move(a));
    return m;
}

}  // namespace

TEST_CASE("alias: not found and no tables") {
    const Config cfg = test_config();
    CHECK(expand("alice@localhost", cfg, Maps{}).status == Status::not_found);
    auto r = expand("alice@localhost", cfg, aliases_only({{"root", "alice"}}));
    CHECK(r.status == Status::not_found);
    CHECK(r.rcpts.empty());
}

TEST_CASE("alias: recursion, bare targets get the first local domain, duplicates collapse") {
    const Config cfg = test_config();
    Maps m = aliases_only({{"postmaster", "root"},
                           {"root", "alice, bob@example.com"},
                           {"staff", "root alice Bob@Example.COM carol@remote.test"}});
    auto r = expand("postmaster@example.com", cfg, m);
    REQUIRE(r.status == Status::expanded);
    CHECK(r.rcpts == Strings{"alice@localhost", "bob@example.com"});
    r = expand("Postmaster", cfg, m);  // RFC 5321 bare postmaster
    CHECK(r.rcpts == Strings{"alice@localhost", "bob@example.com"});
    r = expand("staff@localhost", cfg, m);
    CHECK(r.rcpts == Strings{"alice@localhost", "bob@example.com", "carol@remote.test"});
}

TEST_CASE("alias: keys are lower-cased local parts, only for local domains") {
    const Config cfg = test_config();
    Maps m = aliases_only({{"root", "alice"}});
    CHECK(expand("ROOT@LocalHost", cfg, m).rcpts == Strings{"alice@localhost"});
    CHECK(expand("root@remote.test", cfg, m).status == Status::not_found);
}

TEST_CASE("alias: loops deliver to the mailbox met again") {
    const Config cfg = test_config();
    // a -> b -> a: expanding a ends at a's own mailbox, expanding b at b's.
    Maps m = aliases_only({{"a", "b"}, {"b", "a"}, {"self", "self, other"}, {"x", "y"}, {"y", "z"}, {"z", "x, w"}});
    CHECK(expand("a@localhost", cfg, m).rcpts == Strings{"a@localhost"});
    CHECK(expand("b@localhost", cfg, m).rcpts == Strings{"b@localhost"});
    CHECK(expand("self@localhost", cfg, m).rcpts == Strings{"self@localhost", "other@localhost"});
    CHECK(expand("x@localhost", cfg, m).rcpts == Strings{"x@localhost", "w@localhost"});
}

TEST_CASE("alias: depth limit") {
    const Config cfg = test_config();
    std::map<std::string, std::string> chain;
    for (int i = 0; i < kMaxDepth; i++) chain["n" + std::to_string(i)] = "n" + std::to_string(i + 1);
    auto r = expand("n0@localhost", cfg, aliases_only(chain));  // ten expansions: fine
    CHECK(r.rcpts == Strings{"n10@localhost"});
    chain["n10"] = "n11";
    r = expand("n0@localhost", cfg, aliases_only(chain));
    CHECK(r.status == Status::error);
    CHECK(r.rcpts.empty());
    CHECK(std::string(r.summary) == "aliases nested too deeply");
}

TEST_CASE("alias: fan-out cap") {
    const Config cfg = test_config();
    std::string many;
    for (std::size_t i = 0; i < kMaxRecipients; i++) many += "u" + std::to_string(i) + " ";
    auto r = expand("list@localhost", cfg, aliases_only({{"list", many}}));
    REQUIRE(r.status == Status::expanded);
    CHECK(r.rcpts.size() == kMaxRecipients);
    r = expand("list@localhost", cfg, aliases_only({{"list", many + "one-more"}}));
    CHECK(r.status == Status::error);
    CHECK(r.error.find("more than 1000 recipients") != std::string::npos);
    // Two levels of 40 x 40 = 1600 distinct addresses also hit the cap.
    std::map<std::string, std::string> tree;
    std::string top;
    for (int i = 0; i < 40; i++) {
        top += "g" + std::to_string(i) + " ";
        std::string members;
        for (int j = 0; j < 40; j++) members += "m" + std::to_string(i) + "_" + std::to_string(j) + " ";
        tree["g" + std::to_string(i)] = members;
    }
    tree["all"] = top;
    CHECK(expand("all@localhost", cfg, aliases_only(tree)).status == Status::error);
}

TEST_CASE("virtual: exact, catch-all, @domain rewrite, then aliases") {
    const Config cfg = test_config();
    Maps m;
    m.virtual_map = map_lookup({{"info@example.org", "alice@localhost"},
                                {"@example.org", "catchall@localhost"},
                                {"example.org", "x"},
                                {"@old.test", "@example.com"},
                                {"sales@example.org", "team@localhost, info@example.org"}});
    m.aliases = map_lookup({{"team", "bob, carol"}, {"catchall", "dave"}});
    CHECK(expand("Info@Example.ORG", cfg, m).rcpts == Strings{"alice@localhost"});
    CHECK(expand("nobody@example.org", cfg, m).rcpts == Strings{"dave@localhost"});
    CHECK(expand("Fred@old.test", cfg, m).rcpts == Strings{"Fred@example.com"});
    CHECK(expand("sales@example.org", cfg, m).rcpts ==
          Strings{"bob@localhost", "carol@localhost", "alice@localhost"});
    CHECK(is_virtual_domain("example.org", m));
    CHECK_FALSE(is_virtual_domain("old.test", m));
    CHECK_FALSE(is_virtual_domain("", m));
}

TEST_CASE("alias: a bad target in a table built elsewhere is an error, not a delivery") {
    const Config cfg = test_config();
    auto r = expand("x@localhost", cfg, aliases_only({{"x", "|/bin/sh"}}));
    CHECK(r.status == Status::error);
    CHECK(expand("x@localhost", cfg, aliases_only({{"x", " , "}})).status == Status::error);
}

TEST_CASE("alias: build-time entry checks") {
    std::string err;
    CHECK(check_entry(false, "root", "alice, bob@example.org", err));
    CHECK_FALSE(check_entry(false, "root", "|/usr/bin/procmail", err));
    CHECK(err.find("commands are not supported") != std::string::npos);
    CHECK_FALSE(check_entry(false, "root", "alice, /var/mail/root", err));
    CHECK(err.find("files") != std::string::npos);
    CHECK_FALSE(check_entry(false, "root", ":INCLUDE:/etc/list", err));
    CHECK_FALSE(check_entry(false, "root", "\"|cmd\"", err));
    CHECK_FALSE(check_entry(false, "root@example.org", "alice", err));
    CHECK_FALSE(check_entry(false, "root", "@example.org", err));  // @domain only in virtual
    CHECK_FALSE(check_entry(false, "root", "a@@b", err));
    CHECK(check_entry(true, "info@example.org", "alice@localhost", err));
    CHECK(check_entry(true, "@example.org", "@example.net", err));
    CHECK(check_entry(true, "example.org", "anything at all |", err));  // a virtual alias domain
    CHECK_FALSE(check_entry(true, "info@example.org", "|cmd", err));
    CHECK_FALSE(check_entry(true, "bad key@x", "a", err));
    CHECK(split_targets(" a, b\tc,,d ") == Strings{"a", "b", "c", "d"});
}
