// Unit tests for common/milter_client's message editing (what SMFIR_ADDHEADER, INSHEADER, CHGHEADER and
// REPLBODY do to a held message, written back byte for byte) and the milter keys of mta.conf. The chain's
// conversations are tested against real libmilter milters in tests/integration/test_milter.py.
#include <doctest/doctest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <string>

#include "common/config.h"
#include "common/fd.h"
#include "common/milter_client.h"

using namespace mta;
using namespace mta::milter;

namespace {

UniqueFd memfd_with(const std::string& s) {
    UniqueFd fd(memfd_create("test", MFD_CLOEXEC));
    REQUIRE(fd);
    REQUIRE(write(fd.get(), s.data(), s.size()) == ssize_t(s.size()));
    return fd;
}

std::string contents(int fd) {
    std::string out(size_t(lseek(fd, 0, SEEK_END)), '\0');
    REQUIRE(pread(fd, out.data(), out.size(), 0) == ssize_t(out.size()));
    return out;
}

std::string rewrite(const Message& m) {
    std::string err;
    UniqueFd out = m.write(err);
    REQUIRE_MESSAGE(out, err);
    return contents(out.get());
}

const std::string kMsg = "Subject: hi\r\nFrom: a@b.example\r\nReceived: one\r\n\tfolded\r\nX-A: 1\r\nx-a: 2\r\n\r\nbody\r\n.line\r\n";

}  // namespace

TEST_CASE("milter message: headers parsed, folded lines kept, untouched message written back unchanged") {
    UniqueFd fd = memfd_with(kMsg);
    Message m;
    std::string err;
    REQUIRE(m.load(fd.get(), err));
    REQUIRE(m.headers.size() == 5);
    CHECK(m.headers[2].name == "Received");
    CHECK(m.headers[2].raw == "Received: one\r\n\tfolded\r\n");
    CHECK(m.body_length() == 13);
    CHECK_FALSE(m.changed());
    CHECK(rewrite(m) == kMsg);
}

TEST_CASE("milter message: add, insert, change and delete as Sendmail and Postfix read the indexes") {
    UniqueFd fd = memfd_with(kMsg);
    Message m;
    std::string err;
    REQUIRE(m.load(fd.get(), err));
    m.add_header("X-Added", "at the end", false);
    m.insert_header(0, "X-Top", "first", false);
    m.insert_header(99, "X-Far", "past the end goes last", false);
    m.change_header(2, "x-A", "second changed", false);  // the 2nd X-A, case-insensitively
    m.change_header(0, "Subject", "", false);             // 0 means 1; "" deletes
    m.change_header(1, "X-Missing", "added", true);       // changing a missing header adds it (leadspc: as given)
    CHECK(m.changed());
    CHECK(rewrite(m) ==
          "X-Top: first\r\nFrom: a@b.example\r\nReceived: one\r\n\tfolded\r\nX-A: 1\r\nx-a: second changed\r\n"
          "X-Added: at the end\r\nX-Far: past the end goes last\r\nX-Missing:added\r\n\r\nbody\r\n.line\r\n");
}

TEST_CASE("milter message: a replaced body gets CRLF line ends and a final line end; a size limit holds") {
    UniqueFd fd = memfd_with(kMsg);
    Message m;
    std::string err;
    REQUIRE(m.load(fd.get(), err));
    REQUIRE(m.append_body("new\nbody\r", 1000));
    REQUIRE(m.append_body("\nlast", 1000));
    REQUIRE(m.finish_body(err));
    std::string out = rewrite(m);
    CHECK(out.substr(out.find("\r\n\r\n") + 4) == "new\r\nbody\r\nlast\r\n");
    CHECK_FALSE(m.append_body(std::string(2000, 'x'), 1000));
}

TEST_CASE("milter message: no header block, and headers without an empty line before the body") {
    std::string err;
    {
        UniqueFd fd = memfd_with("just text, no header\r\n");
        Message m;
        REQUIRE(m.load(fd.get(), err));
        CHECK(m.headers.empty());
        m.add_header("X-New", "v", false);
        CHECK(rewrite(m) == "X-New: v\r\n\r\njust text, no header\r\n");
    }
    {
        UniqueFd fd = memfd_with("Subject: s\r\n");
        Message m;
        REQUIRE(m.load(fd.get(), err));
        CHECK(m.headers.size() == 1);
        CHECK(m.body_length() == 0);
        CHECK(rewrite(m) == "Subject: s\r\n");
    }
}

TEST_CASE("mta.conf: milter lists, the default action and the macro lists") {
    Config c;
    std::vector<ConfigError> errors;
    REQUIRE(parse_config("smtpd_milters = unix:/run/a.sock, inet:localhost:11332 inet:[::1]:8891 local:/b\n"
                         "non_smtpd_milters = inet:127.0.0.1:9\nmilter_default_action = accept\n"
                         "milter_rcpt_macros = i {rcpt_addr}\n",
                         "t", c, errors));
    REQUIRE(c.smtpd_milters.size() == 4);
    CHECK(c.smtpd_milters[0].path == "/run/a.sock");
    CHECK(c.smtpd_milters[1].host == "127.0.0.1");
    CHECK(c.smtpd_milters[1].port == 11332);
    CHECK(c.smtpd_milters[2].host == "::1");
    CHECK(c.smtpd_milters[3].path == "/b");
    CHECK(c.smtpd_milters[1].spec == "inet:localhost:11332");
    CHECK(c.non_smtpd_milters.size() == 1);
    CHECK(c.milter_default_action == "accept");
    CHECK(c.milter_macros[3] == std::vector<std::string>{"i", "{rcpt_addr}"});
    CHECK(c.milter_macros[0].front() == "j");  // defaults stay
    CHECK(c.milter_command_timeout == 30);
    for (const char* bad : {"smtpd_milters = unix:relative\n", "smtpd_milters = inet:mail.example:25\n",
                            "smtpd_milters = tcp:1.2.3.4:5\n", "smtpd_milters = inet:1.2.3.4\n",
                            "milter_default_action = quarantine\n", "milter_helo_macros = {bad name}\n",
                            "milter_helo_macros = {x\n", "milter_content_timeout = 0\n"}) {
        Config d;
        std::vector<ConfigError> e;
        CHECK_MESSAGE(!parse_config(bad, "t", d, e), bad);
    }
}
