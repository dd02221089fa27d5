// Unit tests for common/config: the default host name and what mtad pins for its chrooted roles.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>

#include <cstdio>
#include <sys/stat.h>
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

TEST_CASE("config: a key given twice: the last wins, with a warning naming both lines") {
    Config c;
    std::vector<ConfigError> errors;
    REQUIRE(parse_config("hostname = a.example\n# x\nhostname = b.example\n", "m.conf", c, errors));
    CHECK(c.hostname == "b.example");
    REQUIRE(c.warnings.size() == 1);
    CHECK(c.warnings[0] == "m.conf:3: hostname: overrides the earlier setting on line 1");
}

TEST_CASE("config: CRLF lines, trailing blanks and NUL bytes") {
    Config c;
    std::vector<ConfigError> errors;
    REQUIRE(parse_config("hostname = a.example  \r\nrecipient_limit = 7\r\n", "m.conf", c, errors));
    CHECK(c.hostname == "a.example");
    CHECK(c.recipient_limit == 7);
    CHECK_FALSE(parse_config(std::string("hostname = a.ex\0ample\n", 22), "m.conf", c, errors));
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].str() == "m.conf:1: hostname: NUL byte in value");
}

TEST_CASE("config: load_config refuses a directory, a FIFO and an oversized file with the path") {
    char tmpl[] = "/tmp/test-config-XXXXXX";
    std::string dir = mkdtemp(tmpl);
    Config c;
    for (std::string kind : {"dir", "fifo", "big"}) {
        std::string path = dir + "/" + kind;
        if (kind == "dir") REQUIRE(mkdir(path.c_str(), 0700) == 0);
        if (kind == "fifo") REQUIRE(mkfifo(path.c_str(), 0600) == 0);  // must not block
        if (kind == "big") {
            FILE* f = fopen(path.c_str(), "w");
            REQUIRE(f);
            std::string line = "hostname = " + std::string(2 * 1024 * 1024, 'a') + "\n";
            fwrite(line.data(), 1, line.size(), f);
            fclose(f);
        }
        std::vector<ConfigError> errors;
        CHECK_FALSE(load_config(path, true, c, errors));
        REQUIRE(errors.size() == 1);
        CHECK(errors[0].file == path);
        CHECK(errors[0].message == (kind == "big" ? "file too large" : "not a plain file"));
        if (kind == "dir") rmdir(path.c_str());
        else unlink(path.c_str());
    }
    std::vector<ConfigError> errors;
    CHECK(load_config(dir + "/absent", true, c, errors));  // the implicit default path may be absent
    CHECK_FALSE(load_config(dir + "/absent", false, c, errors));
    rmdir(dir.c_str());
}

TEST_CASE("config: mynetworks entries parse strictly and match by family") {
    Cidr n;
    for (const char* bad : {"127.0.0.1/", "127.0.0.1/33", "::1/129", "127.0.0.1/-1", "127.0.0.1/8x", "127.1/8",
                            "localhost", "10.0.0.0/8;"})
        CHECK_MESSAGE(!parse_cidr(bad, n), bad);
    auto v4 = [](const char* ip) {
        sockaddr_in s{};
        s.sin_family = AF_INET;
        inet_pton(AF_INET, ip, &s.sin_addr);
        return s;
    };
    auto v6 = [](const char* ip) {
        sockaddr_in6 s{};
        s.sin6_family = AF_INET6;
        inet_pton(AF_INET6, ip, &s.sin6_addr);
        return s;
    };
    auto match = [&](const char* net, const auto& sa) {
        Cidr c;
        REQUIRE(parse_cidr(net, c));
        return c.matches(reinterpret_cast<const sockaddr*>(&sa));
    };
    Cidr hostbits;
    CHECK_FALSE(parse_cidr("127.0.0.9/30", hostbits));  // host bits set: a typo, refused
    CHECK_FALSE(parse_cidr("10.1.2.3/8", hostbits));
    CHECK_FALSE(parse_cidr("2001:db8::1/64", hostbits));
    CHECK(match("127.0.0.8/30", v4("127.0.0.10")));
    CHECK_FALSE(match("127.0.0.8/30", v4("127.0.0.12")));
    CHECK(match("10.0.0.0/8", v4("10.200.1.1")));
    CHECK(match("2001:db8::/32", v6("2001:db8:ffff::1")));
    CHECK(match("127.0.0.9", v4("127.0.0.9")));
    CHECK(match("0.0.0.0/0", v4("192.0.2.1")));
    CHECK(match("0.0.0.0/0", v4("192.0.2.1")));
    CHECK_FALSE(match("::/0", v4("127.0.0.1")));         // IPv6 entries never match IPv4 clients
    CHECK_FALSE(match("::ffff:0:0/96", v4("127.0.0.1")));
    CHECK(match("::/0", v6("::1")));
    CHECK(match("127.0.0.0/8", v6("::ffff:127.0.0.9")));  // IPv4 entries match IPv4-mapped clients
    CHECK_FALSE(match("127.0.0.0/8", v6("::1")));
    CHECK(match("[::1]/128", v6("::1")));
}

TEST_CASE("config: smtpd_client_event_limit_exceptions defaults to $mynetworks, resolved at use") {
    auto v4 = [](const char* ip) {
        sockaddr_in s{};
        s.sin_family = AF_INET;
        inet_pton(AF_INET, ip, &s.sin_addr);
        return s;
    };
    auto exempt = [&](const Config& c, const char* ip) {
        auto sa = v4(ip);
        return c.exempt_from_client_limits(reinterpret_cast<const sockaddr*>(&sa));
    };
    std::vector<ConfigError> errors;
    Config c;
    // The exception list comes first in the file: $mynetworks still means the later mynetworks.
    REQUIRE(parse_config("mynetworks = 10.0.0.0/8\n", "t", c, errors));
    CHECK(config_value_text(c, "smtpd_client_event_limit_exceptions") == "$mynetworks");
    CHECK(exempt(c, "10.1.2.3"));
    CHECK_FALSE(exempt(c, "127.0.0.1"));
    REQUIRE(parse_config("smtpd_client_event_limit_exceptions = $mynetworks, 192.0.2.0/24\nmynetworks = 10.0.0.0/8\n",
                         "t", c, errors));
    CHECK(exempt(c, "10.1.2.3"));
    CHECK(exempt(c, "192.0.2.77"));
    CHECK_FALSE(exempt(c, "198.51.100.1"));
    REQUIRE(parse_config("smtpd_client_event_limit_exceptions = ${mynetworks}\n", "t", c, errors));
    CHECK(exempt(c, "127.0.0.1"));
    REQUIRE(parse_config("smtpd_client_event_limit_exceptions =\n", "t", c, errors));  // nobody
    CHECK_FALSE(exempt(c, "127.0.0.1"));
    auto lo = v4("127.0.0.1");
    CHECK(c.in_mynetworks(reinterpret_cast<const sockaddr*>(&lo)));  // relaying is another matter
    REQUIRE(parse_config("smtpd_client_event_limit_exceptions = 192.0.2.0/24\n", "t", c, errors));
    CHECK_FALSE(exempt(c, "127.0.0.1"));  // mynetworks only when the list names it
    CHECK(exempt(c, "192.0.2.1"));
    for (const char* bad : {"$relay_domains", "$mynetworks/8", "192.0.2.1/33", "mynetworks"}) {
        errors.clear();
        CHECK_FALSE(parse_config(std::string("smtpd_client_event_limit_exceptions = ") + bad + "\n", "t", c, errors));
        REQUIRE(errors.size() == 1);
        CHECK(errors[0].key == "smtpd_client_event_limit_exceptions");
    }
    errors.clear();
    CHECK_FALSE(parse_config("mynetworks = $mynetworks\n", "t", c, errors));  // no self-reference
}
