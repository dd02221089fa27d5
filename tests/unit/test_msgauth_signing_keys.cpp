// Unit tests for msgauth/signing_keys: the dkim table read whole with its key files, every bad entry an
// error at the FILE:LINE the table source names, and the keys chosen for a From: domain (its own, else
// the nearest listed parent, never a top-level domain's; RSA first).
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "common/table.h"
#include "msgauth/dkim_keygen.h"
#include "msgauth/signing_keys.h"

using namespace mta;
using namespace mta::msgauth;

namespace {

std::string write_key(const std::string& dir, const std::string& name, DkimKeyType type) {
    DkimPrivateKey key;
    std::string err;
    REQUIRE(generate_private_key(type, type == DkimKeyType::rsa ? 1024 : 0, key, err));
    std::string path = dir + "/" + name;
    std::ofstream(path) << private_key_pem(key);
    return path;
}

// Builds the table the way mtamap does, from `source` lines, with `origin` as the source's name.
std::string build(const std::string& dir, const std::string& source) {
    table::Entries entries;
    std::vector<std::string> errors;
    REQUIRE(table::parse_source(source, table::Kind::dkim, entries, errors, nullptr, "/etc/mta/dkim.txt"));
    std::string path = dir + "/dkim.lmdb", err;
    REQUIRE(table::write_table(path, entries, 0600, err));
    return path;
}

}  // namespace

TEST_CASE("signing keys: load, choose by domain and parent, report bad entries at their source line") {
    char tmpl[] = "/tmp/test_signing_keys.XXXXXX";
    std::string dir = mkdtemp(tmpl);
    std::string rsa = write_key(dir, "rsa.key", DkimKeyType::rsa), ed = write_key(dir, "ed.key", DkimKeyType::ed25519);

    SigningKeys keys;
    std::vector<ConfigError> errors;
    std::string table = build(dir, "Example.COM e1 ed25519 " + ed + "\nexample.com r1 rsa " + rsa + "\n");
    REQUIRE(keys.load(table, "mta.conf", errors));
    CHECK(keys.size() == 2);
    auto chosen = keys.for_domain("example.com");
    REQUIRE(chosen.size() == 2);
    CHECK((chosen[0]->selector == "r1" && chosen[1]->selector == "e1"));  // RSA first
    CHECK(keys.for_domain("mail.dept.example.com").size() == 2);         // the nearest listed parent
    CHECK(keys.for_domain("example.org").empty());
    CHECK(keys.for_domain("com").empty());

    table = build(dir, "# comment\nexample.com r1 rsa " + rsa + "\nexample.net s1 rsa " + dir + "/missing.key\n" +
                           "example.net s2 rsa " + ed + "\n");
    errors.clear();
    CHECK_FALSE(keys.load(table, "mta.conf", errors));
    REQUIRE(errors.size() == 2);
    CHECK(errors[0].str().rfind("/etc/mta/dkim.txt:3: dkim_keys: example.net selector s1: ", 0) == 0);
    CHECK(errors[1].str().rfind("/etc/mta/dkim.txt:4: dkim_keys: example.net selector s2: ", 0) == 0);
    CHECK(keys.size() == 0);  // all or nothing: never a silently unsigned domain

    errors.clear();
    CHECK_FALSE(keys.load(dir + "/no-such.lmdb", "mta.conf", errors));
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].key == "dkim_keys");
    std::filesystem::remove_all(dir);
}

TEST_CASE("dkim table source: fields checked at their line") {
    table::Entries entries;
    std::vector<std::string> errors;
    CHECK_FALSE(table::parse_source("a.example s1 dsa /k\nb.example s1 rsa relative.key\nc.example s1 rsa\n"
                                    "bad_domain! s1 rsa /k\n",
                                    table::Kind::dkim, entries, errors, nullptr));
    REQUIRE(errors.size() == 4);
    CHECK(errors[0].rfind("line 1: bad key type", 0) == 0);
    CHECK(errors[1].rfind("line 2: the key file must be an absolute path", 0) == 0);
    CHECK(errors[2].rfind("line 3: expected DOMAIN SELECTOR", 0) == 0);
    CHECK(errors[3].rfind("line 4: bad domain", 0) == 0);
    entries.clear();
    errors.clear();
    CHECK(table::parse_source("a.example s1 rsa /k\na.example s2 ed25519 /k2\n", table::Kind::dkim, entries, errors,
                              nullptr, "/src"));
    REQUIRE(entries.size() == 2);
    CHECK((entries[0].first == "a.example s1" && entries[0].second == "rsa /k /src:1"));
}
