// Unit tests for queue-manager/route_tables: the queue's copies of transport_map/smtp_tls_policy_map are
// opened, reopened after a replacement by rename, and a missing copy defers instead of misrouting.
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <unistd.h>

#include "common/table.h"
#include "queue-manager/route_tables.h"
#include "tests/unit/config_with.h"

using namespace mta;
using mta::test::config_with;

namespace {

struct TablesDir {
    std::string path;
    TablesDir() {
        char tmpl[] = "/tmp/test_route_tables.XXXXXX";
        path = mkdtemp(tmpl);
    }
    ~TablesDir() { (void)!system(("rm -rf '" + path + "'").c_str()); }
    void put(const char* name, const table::Entries& e) const {
        std::string err;
        REQUIRE(table::write_table(path + "/" + name + ".lmdb", e, 0644, err));
    }
};

}  // namespace

TEST_CASE("route tables: open, reopen after replacement, defer while missing") {
    TablesDir d;
    d.put("transport_map", {{"a.example", "smtp:[127.0.0.1]:25"}});
    queue::RouteTableSet set(d.path);
    set.configure(config_with("transport_map = /etc/mta/transport.lmdb\n"));
    Config cfg = config_with("");
    auto r = route(cfg, "a.example", set.tables());
    CHECK(r.nexthop == "smtp:[127.0.0.1]:25");
    CHECK(route(cfg, "b.example", set.tables()).nexthop == "b.example");

    d.put("transport_map", {{"a.example", "smtp:[127.0.0.2]:25"}, {"b.example", "retry:4.3.2 later"}});
    set.refresh();
    CHECK(route(cfg, "a.example", set.tables()).nexthop == "smtp:[127.0.0.2]:25");
    CHECK(route(cfg, "b.example", set.tables()).role == "retry");

    REQUIRE(unlink((d.path + "/transport_map.lmdb").c_str()) == 0);
    set.refresh();
    r = route(cfg, "a.example", set.tables());
    CHECK(r.role == "retry");
    CHECK(r.text.rfind("4.3.0 transport_map unavailable", 0) == 0);

    d.put("transport_map", {{"a.example", "local:"}});
    set.refresh();
    CHECK(route(cfg, "a.example", set.tables()).role == "local");

    // Unset on reload: the table is no longer consulted at all.
    set.configure(config_with(""));
    CHECK(route(cfg, "a.example", set.tables()).nexthop == "a.example");
}

TEST_CASE("route tables: a configured TLS policy table that was never published defers remote mail") {
    TablesDir d;
    queue::RouteTableSet set(d.path);
    set.configure(config_with("smtp_tls_policy_map = /etc/mta/tls.lmdb\n"));
    Config cfg = config_with("local_domains = localhost\n");
    CHECK(route(cfg, "remote.example", set.tables()).role == "retry");
    CHECK(route(cfg, "localhost", set.tables()).role == "local");
    d.put("smtp_tls_policy_map", {{".example", "encrypt"}});
    set.refresh();
    auto r = route(cfg, "remote.example", set.tables());
    CHECK(r.role == "smtp");
    CHECK(r.tls_level == "encrypt");
}
