// Unit tests for common/config: the default host name and what mtad pins for its chrooted roles.
#include <doctest/doctest.h>

#include <unistd.h>

#include "common/config.h"

using namespace mta;

TEST_CASE("config: default hostname is the system name, qualified when the lookup gives a dot") {
    Config c;
    std::vector<ConfigError> errors;
    REQUIRE(parse_config("", "t", c, errors));
    char buf[256] = {};
    REQUIRE(gethostname(buf, sizeof buf - 1) == 0);
    std::string shortname = buf;
    for (auto& ch : shortname) ch = char(tolower(static_cast<unsigned char>(ch)));
    // Either the short name itself, or a dotted name that begins with it (gethostname may
    // already be qualified; then it is kept as it is).
    bool same = c.hostname == shortname;
    bool qualified = c.hostname.find('.') != std::string::npos &&
                     c.hostname.rfind(shortname.substr(0, shortname.find('.')) + ".", 0) == 0;
    CHECK((same || qualified || c.hostname == "localhost"));
    CHECK(config_value_text(c, "hostname") == "");

    Config set;
    REQUIRE(parse_config("hostname = MX.Example.ORG\n", "t", set, errors));
    CHECK(set.hostname == "mx.example.org");
}

TEST_CASE("config: absolutize_paths pins the looked-up hostname into the text the roles re-parse") {
    Config c;
    std::vector<ConfigError> errors;
    REQUIRE(parse_config("log_level = debug\n", "t", c, errors));
    absolutize_paths(c);
    CHECK(c.text.find("hostname = " + c.hostname + "\n") != std::string::npos);
    CHECK(c.spool_dir.front() == '/');
    Config again;
    REQUIRE(parse_config(c.text, "t", again, errors));
    CHECK(again.hostname == c.hostname);
    CHECK(again.spool_dir == c.spool_dir);

    // An explicit hostname is already in the text: nothing is appended for it.
    Config set;
    REQUIRE(parse_config("hostname = mx.example.org\n", "t", set, errors));
    absolutize_paths(set);
    CHECK(set.text.find("hostname = mx.example.org\n") == set.text.rfind("hostname = "));
}
