// Unit tests for common/table: source parsing per kind, password hashes, and LMDB tables written
// atomically, looked up, and detected as replaced after a rename (what mta-smtpd relies on).
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "common/table.h"

using namespace mta::table;

namespace {

std::string fake_hash(const std::string& pw) { return "$6$fakesalt$" + pw; }

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/test_table.XXXXXX";
        path = mkdtemp(tmpl);
    }
    ~TempDir() { (void)!system(("rm -rf '" + path + "'").c_str()); }
};

}  // namespace

TEST_CASE("parse_source: auth hashes plain passwords and keeps crypt hashes") {
    Entries e;
    std::vector<std::string> errors;
    REQUIRE(parse_source("# users\nalice:secret\n\nbob@example.org:$6$abcdefgh$0123456789abcdef\n", Kind::auth, e, errors,
                         fake_hash));
    REQUIRE(e.size() == 2);
    CHECK(e[0] == std::pair<std::string, std::string>{"alice", "$6$fakesalt$secret"});
    CHECK(e[1].second == "$6$abcdefgh$0123456789abcdef");
}

TEST_CASE("parse_source: errors name the line") {
    Entries e;
    std::vector<std::string> errors;
    CHECK_FALSE(parse_source("alice:x\nnocolon\nalice:y\nbad\x01:z\n", Kind::auth, e, errors, fake_hash));
    REQUIRE(errors.size() == 3);
    CHECK(errors[0].rfind("line 2:", 0) == 0);
    CHECK(errors[1].find("duplicate") != std::string::npos);
    CHECK(errors[2].rfind("line 4:", 0) == 0);
}

TEST_CASE("parse_source: recipients, aliases, virtual are lower-cased") {
    Entries e;
    std::vector<std::string> errors;
    REQUIRE(parse_source("Alice\nBob@Example.ORG  whatever\n", Kind::recipients, e, errors, fake_hash));
    CHECK(e[0] == std::pair<std::string, std::string>{"alice", "ok"});
    CHECK(e[1] == std::pair<std::string, std::string>{"bob@example.org", "whatever"});
    e.clear();
    REQUIRE(parse_source("Postmaster: root, alice\n", Kind::aliases, e, errors, fake_hash));
    CHECK(e[0] == std::pair<std::string, std::string>{"postmaster", "root, alice"});
    e.clear();
    REQUIRE(parse_source("info@Example.com alice@localhost\n", Kind::virtual_map, e, errors, fake_hash));
    CHECK(e[0] == std::pair<std::string, std::string>{"info@example.com", "alice@localhost"});
    CHECK_FALSE(parse_source("lonely:\n", Kind::aliases, e, errors, fake_hash));
}

TEST_CASE("parse_source: tabs separate fields; indented lines continue an entry (Postfix syntax)") {
    Entries e;
    std::vector<std::string> errors;
    REQUIRE(parse_source("team:\talice,\n\tbob,\n  # a comment inside\n   carol\nsolo: dave\n", Kind::aliases, e, errors,
                         fake_hash));
    REQUIRE(e.size() == 2);
    CHECK(e[0] == std::pair<std::string, std::string>{"team", "alice, bob, carol"});
    CHECK(e[1] == std::pair<std::string, std::string>{"solo", "dave"});
    e.clear();
    REQUIRE(parse_source("example.com\tsmtp:[127.0.0.1]:25\n", Kind::transport, e, errors, fake_hash));
    CHECK(e[0] == std::pair<std::string, std::string>{"example.com", "smtp:[127.0.0.1]:25"});
    e.clear();
    errors.clear();
    CHECK_FALSE(parse_source("  orphan@example.com\nok@example.com x\n", Kind::recipients, e, errors, fake_hash));
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].rfind("line 1: continuation", 0) == 0);
    e.clear();
    errors.clear();
    // auth: no continuations; a leading blank is just trimmed, and a tab inside a password is kept.
    REQUIRE(parse_source("alice:pw\n bob:x\ty\n", Kind::auth, e, errors, fake_hash));
    REQUIRE(e.size() == 2);
    CHECK(e[1] == std::pair<std::string, std::string>{"bob", "$6$fakesalt$x\ty"});
}

TEST_CASE("passwords: SHA-512 crypt round trip") {
    std::string h = hash_password("correct horse");
    REQUIRE(h.rfind("$6$", 0) == 0);
    CHECK(h.size() > 3 + 16 + 1 + 80);
    CHECK(h != hash_password("correct horse"));  // random salt
    CHECK(verify_password("correct horse", h));
    CHECK_FALSE(verify_password("correct horsE", h));
    CHECK_FALSE(verify_password("", h));
    CHECK_FALSE(verify_password("x", ""));
    CHECK_FALSE(verify_password("x", "plaintext-in-table"));
}

TEST_CASE("table: write, look up, detect replacement") {
    TempDir d;
    std::string path = d.path + "/t.lmdb";
    std::string err;
    REQUIRE(write_table(path, {{"alice", "1"}, {"bob", "2"}}, 0600, err));
    struct stat st {};
    REQUIRE(stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    CHECK(access((path + "-lock").c_str(), F_OK) != 0);  // no lock file beside it
    auto t = Table::open(path, err);
    REQUIRE(t);
    CHECK(t->lookup("alice") == std::string("1"));
    CHECK_FALSE(t->lookup("carol"));
    CHECK_FALSE(t->lookup(""));
    CHECK_FALSE(t->replaced());
    REQUIRE(write_table(path, {{"carol", "3"}}, 0644, err));
    CHECK(t->replaced());
    CHECK(t->lookup("alice") == std::string("1"));  // the old mapping stays consistent
    auto t2 = Table::open(path, err);
    REQUIRE(t2);
    CHECK(t2->lookup("carol") == std::string("3"));
    CHECK_FALSE(t2->lookup("alice"));
    CHECK_FALSE(Table::open(d.path + "/missing.lmdb", err));
    CHECK_FALSE(err.empty());
}
