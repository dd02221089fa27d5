// Unit tests for mtad's control connections (master/control_server.h): a request assembled from any
// chunking, the size cap, the connection cap, a deadline drop (a 0 s deadline, so no sleeping), a long
// chunked reply to a slow reader delivered whole and in order, and a client that leaves before its
// answer. Sockets are abstract AF_UNIX names; the event loop is run by hand without blocking.
#include <doctest/doctest.h>

#include <event2/event.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "master/control_server.h"

using mta::UniqueFd;
using mta::master::ControlLimits;
using mta::master::ControlPeer;
using mta::master::ControlServer;

namespace {

struct Harness {
    event_base* base = event_base_new();
    sockaddr_un sa = {};
    socklen_t salen = 0;
    std::unique_ptr<ControlServer> server;
    std::vector<std::pair<ControlPeer, std::string>> requests;
    std::vector<uint64_t> gone;
    bool answer_now = true;

    explicit Harness(ControlLimits limits = {}) {
        static int seq = 0;
        std::string name = "mta-unit-control-" + std::to_string(getpid()) + "-" + std::to_string(++seq);
        sa.sun_family = AF_UNIX;
        memcpy(sa.sun_path + 1, name.data(), name.size());  // abstract: no file to clean up
        salen = socklen_t(offsetof(sockaddr_un, sun_path) + 1 + name.size());
        UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        REQUIRE(bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), salen) == 0);
        REQUIRE(listen(fd.get(), 64) == 0);
        server = std::make_unique<ControlServer>(
            base, std::move(fd), limits,
            [this](const ControlPeer& p, const std::string& line) {
                requests.emplace_back(p, line);
                if (answer_now) server->reply(p.id, "ok: " + line + "\n", true);
            },
            [this](uint64_t id) { gone.push_back(id); });
    }
    ~Harness() {
        server.reset();
        event_base_free(base);
    }

    UniqueFd client() {
        UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        REQUIRE(connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), salen) == 0);
        return fd;
    }

    void spin(int rounds = 3) {
        for (int i = 0; i < rounds; i++) event_base_loop(base, EVLOOP_NONBLOCK);
    }

    // Runs the loop until cond() holds (bounded: the loop never waits, so this is a few thousand turns).
    bool until(const std::function<bool()>& cond) {
        for (int i = 0; i < 20000; i++) {
            if (cond()) return true;
            event_base_loop(base, EVLOOP_NONBLOCK);
        }
        return cond();
    }
};

// Reads what is there without blocking; eof once mtad's side closed.
void drain(int fd, std::string& got, bool& eof) {
    char buf[65536];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n > 0) { got.append(buf, std::size_t(n)); continue; }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) eof = true;
        return;
    }
}

std::string answer(Harness& h, int fd) {
    std::string got;
    bool eof = false;
    h.until([&] { drain(fd, got, eof); return eof; });
    return got;
}

}  // namespace

TEST_CASE("control: a line sent byte by byte is one request, answered, then the connection closes") {
    Harness h;
    UniqueFd c = h.client();
    for (char ch : std::string("status\n")) {
        REQUIRE(send(c.get(), &ch, 1, 0) == 1);
        h.spin();
    }
    REQUIRE(h.requests.size() == 1);
    CHECK(h.requests[0].second == "status");
    CHECK(h.requests[0].first.uid == geteuid());
    CHECK(h.requests[0].first.privileged);
    CHECK(answer(h, c.get()) == "ok: status\n");
    CHECK(h.server->clients() == 0);
    CHECK(h.gone.empty());
}

TEST_CASE("control: bytes after the newline are ignored; a line without one is never a request") {
    Harness h;
    UniqueFd a = h.client(), b = h.client();
    REQUIRE(send(a.get(), "reload\nstop\n", 12, 0) == 12);
    REQUIRE(send(b.get(), "stop", 4, 0) == 4);
    h.spin();
    shutdown(b.get(), SHUT_WR);
    CHECK(answer(h, a.get()) == "ok: reload\n");
    CHECK(answer(h, b.get()).empty());
    REQUIRE(h.requests.size() == 1);
    CHECK(h.server->clients() == 0);
}

TEST_CASE("control: the size cap drops a request without a newline") {
    Harness h;
    UniqueFd c = h.client();
    std::string big(600, 'a');
    REQUIRE(send(c.get(), big.data(), big.size(), 0) == ssize_t(big.size()));
    CHECK(answer(h, c.get()).empty());
    CHECK(h.requests.empty());
    CHECK(h.server->clients() == 0);
    // 511 bytes and the newline still fit.
    UniqueFd d = h.client();
    std::string line = std::string(511, 'b') + "\n";
    REQUIRE(send(d.get(), line.data(), line.size(), 0) == ssize_t(line.size()));
    CHECK(answer(h, d.get()) == "ok: " + std::string(511, 'b') + "\n");
}

TEST_CASE("control: a client that sends nothing is dropped at the deadline") {
    ControlLimits l;
    l.request_seconds = 0;  // due at once: the next loop turn drops it
    Harness h(l);
    UniqueFd c = h.client();
    CHECK(answer(h, c.get()).empty());
    CHECK(h.requests.empty());
    CHECK(h.server->clients() == 0);
}

TEST_CASE("control: connections over the cap are closed at once, the others are served") {
    ControlLimits l;
    l.max_clients = 2;
    Harness h(l);
    UniqueFd a = h.client(), b = h.client(), c = h.client();
    h.spin();
    CHECK(h.server->clients() == 2);
    CHECK(answer(h, c.get()).empty());
    REQUIRE(send(a.get(), "status\n", 7, 0) == 7);
    CHECK(answer(h, a.get()) == "ok: status\n");
    UniqueFd d = h.client();  // a slot is free again
    REQUIRE(send(d.get(), "status\n", 7, 0) == 7);
    CHECK(answer(h, d.get()) == "ok: status\n");
    CHECK(h.server->clients() == 1);  // b still waits for its deadline
}

TEST_CASE("control: a long reply in chunks reaches a slow reader whole and in order") {
    Harness h;
    h.answer_now = false;
    UniqueFd c = h.client();
    REQUIRE(send(c.get(), "queue list\n", 11, 0) == 11);
    REQUIRE(h.until([&] { return !h.requests.empty(); }));
    uint64_t id = h.requests[0].first.id;
    std::string want;
    for (int i = 0; i < 64; i++) {  // 8 MiB: far more than the socket buffers hold
        std::string chunk(128 * 1024, char('a' + i % 26));
        want += chunk;
        CHECK(h.server->reply(id, chunk, i == 63));
    }
    CHECK(h.server->clients() == 1);  // still writing
    std::string got;
    bool eof = false;
    char small[4096];
    REQUIRE(h.until([&] {  // read a little per turn, as a slow tool would
        ssize_t n = recv(c.get(), small, sizeof small, 0);
        if (n > 0) got.append(small, std::size_t(n));
        else if (n == 0) eof = true;
        return eof;
    }) == true);
    CHECK(got.size() == want.size());
    CHECK(got == want);
    CHECK(h.server->clients() == 0);
    CHECK(h.gone.empty());
}

TEST_CASE("control: a client that leaves before its relayed answer is reported gone") {
    Harness h;
    h.answer_now = false;
    UniqueFd c = h.client();
    REQUIRE(send(c.get(), "queue list\n", 11, 0) == 11);
    REQUIRE(h.until([&] { return !h.requests.empty(); }));
    uint64_t id = h.requests[0].first.id;
    c.reset();
    CHECK_FALSE(h.server->reply(id, "late answer\n", false));
    CHECK(h.gone == std::vector<uint64_t>{id});
    CHECK_FALSE(h.server->reply(id, "later still\n", true));
    CHECK(h.server->clients() == 0);
}
