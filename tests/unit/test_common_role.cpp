// Unit tests for the role skeleton (common/role_name.h, common/role.h): every role name round-trips,
// nothing else parses, and the Reaper frees what it buries only from the loop, then runs its hook.
#include <doctest/doctest.h>

#include <event2/event.h>

#include <memory>
#include <string>
#include <vector>

#include "common/event_ptr.h"
#include "common/role.h"
#include "common/role_name.h"

using namespace mta;

TEST_CASE("role names: each spelled once, round trip, and the programs mtad starts") {
    for (Role r : kAllRoles) CHECK(parse_role(role_name(r)) == r);
    CHECK(std::string(role_name(Role::smtpd)) == "smtpd");
    CHECK(std::string(role_name(Role::queue)) == "queue");
    CHECK(std::string(role_name(Role::smtp)) == "smtp");
    CHECK(std::string(role_name(Role::local)) == "local");
    CHECK(std::string(role_name(Role::resolver)) == "resolver");
    CHECK(std::string(role_program(Role::smtpd)) == "mta-smtpd");
    CHECK(std::string(role_program(Role::resolver)) == "mta-resolver");
    CHECK(std::string(role_program(Role::master)) == "mtad");
}

TEST_CASE("role names: the wire is not trusted") {
    for (const char* bad : {"", "Smtpd", "smtpd ", "mta-smtpd", "queue\n", "q", "smtpdx", "lmtp"})
        CHECK_FALSE(parse_role(bad).has_value());
    CHECK_FALSE(parse_role(std::string_view("smtpd\0", 6)).has_value());
}

namespace {
struct Tracked {
    Tracked(std::vector<std::string>* l, std::string n) : log(l), name(std::move(n)) {}
    Tracked(const Tracked&) = delete;
    Tracked& operator=(const Tracked&) = delete;
    ~Tracked() { log->push_back("freed " + name); }
    std::vector<std::string>* log;
    std::string name;
};
}  // namespace

TEST_CASE("Reaper: buried objects outlive the current callback, then the round's work and hook run") {
    EventBasePtr base(event_base_new());
    REQUIRE(base);
    std::vector<std::string> log;
    daemon::Reaper reaper(base.get(), [&] { log.push_back("after"); });
    reaper.bury(std::make_unique<Tracked>(&log, "a"));
    reaper.bury(std::unique_ptr<Tracked>());  // an empty pointer is ignored
    reaper.later([&] { log.push_back("task"); });
    CHECK(log.empty());  // nothing is freed or run from inside the caller
    event_base_loop(base.get(), EVLOOP_NONBLOCK);
    CHECK(log == std::vector<std::string>{"freed a", "task", "after"});
    log.clear();
    event_base_loop(base.get(), EVLOOP_NONBLOCK);
    CHECK(log.empty());  // nothing pending: no round
    reaper.poke();
    event_base_loop(base.get(), EVLOOP_NONBLOCK);
    CHECK(log == std::vector<std::string>{"after"});
}

TEST_CASE("Reaper: what a round buries is freed in a later round, never inside the task") {
    EventBasePtr base(event_base_new());
    REQUIRE(base);
    std::vector<std::string> log;
    daemon::Reaper reaper(base.get());
    reaper.later([&] {
        reaper.bury(std::make_unique<Tracked>(&log, "b"));
        log.push_back("task done");
    });
    event_base_loop(base.get(), EVLOOP_NONBLOCK);
    event_base_loop(base.get(), EVLOOP_NONBLOCK);
    CHECK(log == std::vector<std::string>{"task done", "freed b"});
}
