// Unit tests for the DATA/BDAT body state machine: end marker, dot-unstuffing, smuggling variants
// in every chunking, NUL, size, Received: counting and the missing headers of submission.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "smtpd/smtpd_data.h"

using namespace mta::smtpd;

namespace {

struct Result {
    std::string body;
    std::size_t consumed = 0;
    bool done = false, bare = false, nul = false, big = false;
    uint64_t received = 0, size = 0;
};

// Feeds `in` in pieces of `step` bytes (0 = all at once), stopping at the end marker like the session.
Result run(BodyReader::Mode mode, const std::string& in, std::size_t step, uint64_t limit = 1 << 20,
           const mta::MissingHeaders& add = {}) {
    BodyReader r(mode, limit, add);
    Result res;
    std::size_t off = 0;
    while (off < in.size() && !r.done()) {
        std::size_t n = step == 0 ? in.size() - off : std::min(step, in.size() - off);
        std::size_t used = r.feed(std::string_view(in).substr(off, n), res.body);
        CHECK(used <= n);
        off += used;
        if (used < n) CHECK(r.done());
    }
    if (mode == BodyReader::Mode::raw) r.finish(res.body);
    res.consumed = off;
    res.done = r.done();
    res.bare = r.bare_cr_lf();
    res.nul = r.nul();
    res.big = r.too_big();
    res.received = r.received_headers();
    res.size = r.size();
    return res;
}

// Splits at every single position into two feeds.
std::vector<Result> run_all_splits(const std::string& in) {
    std::vector<Result> out;
    for (std::size_t cut = 0; cut <= in.size(); cut++) {
        BodyReader r(BodyReader::Mode::dot, 1 << 20);
        Result res;
        std::size_t used = r.feed(std::string_view(in).substr(0, cut), res.body);
        if (!r.done()) used += r.feed(std::string_view(in).substr(cut), res.body);
        res.consumed = used;
        res.done = r.done();
        res.bare = r.bare_cr_lf();
        res.nul = r.nul();
        out.push_back(res);
    }
    return out;
}

const std::size_t kSteps[] = {0, 1, 2, 3, 5, 7, 64};

}  // namespace

TEST_CASE("DATA: plain message and end marker") {
    const std::string msg = "Subject: hi\r\n\r\nhello\r\n.\r\nQUIT\r\n";
    for (std::size_t step : kSteps) {
        Result r = run(BodyReader::Mode::dot, msg, step);
        CHECK(r.done);
        CHECK(r.consumed == msg.size() - 6);
        CHECK(r.body == "Subject: hi\r\n\r\nhello\r\n");
        CHECK_FALSE(r.bare);
        CHECK(r.size == r.body.size());
    }
}

TEST_CASE("DATA: empty message ends at once") {
    Result r = run(BodyReader::Mode::dot, ".\r\n", 1);
    CHECK(r.done);
    CHECK(r.body.empty());
}

TEST_CASE("DATA: dot-unstuffing") {
    const std::string msg = "a\r\n..\r\n..b\r\n...\r\n.x\r\n.\r\n";
    for (std::size_t step : kSteps) {
        Result r = run(BodyReader::Mode::dot, msg, step);
        CHECK(r.done);
        CHECK(r.body == "a\r\n.\r\n.b\r\n..\r\nx\r\n");
        CHECK_FALSE(r.bare);
    }
}

TEST_CASE("DATA: smuggling variants never end the data and are refused") {
    const char* variants[] = {"\n.\n", "\r.\r\n", "\n.\r\n", "\r\n.\n", "\r.\r", "\n.\r", "\r\n.\r",
                              "\r\n.\r\r\n", "\r\n\r.\r\n"};
    for (const char* v : variants) {
        CAPTURE(std::string(v));
        // The fake end is followed by a fake second transaction; only the real end may stop us.
        const std::string evil = std::string("Subject: x\r\n\r\nbody") + v +
                                 "MAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\nDATA\r\nforged\r\n";
        const std::string msg = evil + "\r\n.\r\n";
        const std::string after = "NOOP\r\n";
        for (std::size_t step : kSteps) {
            CAPTURE(step);
            Result r = run(BodyReader::Mode::dot, msg + after, step);
            CHECK(r.done);
            CHECK(r.consumed == msg.size());
            CHECK(r.bare);
        }
        for (const Result& r : run_all_splits(msg + after)) {
            CHECK(r.done);
            CHECK(r.consumed == msg.size());
            CHECK(r.bare);
        }
    }
}

TEST_CASE("DATA: a real CRLF.CRLF after a bare CR/LF ends the data, still refused") {
    for (const char* v : {"\n\r\n.\r\n", "\r\r\n.\r\n"}) {
        const std::string msg = std::string("body") + v;
        for (std::size_t step : kSteps) {
            Result r = run(BodyReader::Mode::dot, msg + "NOOP\r\n", step);
            CHECK(r.done);
            CHECK(r.consumed == msg.size());
            CHECK(r.bare);
        }
    }
}

TEST_CASE("DATA: a smuggled end alone does not finish") {
    const char* variants[] = {"\n.\n", "\r.\r\n", "\n.\r\n", "\r\n.\n", "\r\n.\r"};
    for (const char* v : variants) {
        std::string msg = std::string("x") + v;
        for (std::size_t step : kSteps) {
            Result r = run(BodyReader::Mode::dot, msg, step);
            CHECK_FALSE(r.done);
            CHECK(r.consumed == msg.size());
        }
    }
}

TEST_CASE("DATA: NUL before the dot is not a line start; NUL is refused") {
    const std::string msg = std::string("a\r\n\0.\r\nMAIL FROM:<x@y>\r\n.\r\n", 27);
    for (std::size_t step : kSteps) {
        Result r = run(BodyReader::Mode::dot, msg, step);
        CHECK(r.done);
        CHECK(r.consumed == msg.size());
        CHECK(r.nul);
    }
}

TEST_CASE("DATA: size limit keeps reading to the end") {
    std::string body(5000, 'x');
    const std::string msg = body + "\r\n.\r\nQUIT\r\n";
    for (std::size_t step : {std::size_t(0), std::size_t(1), std::size_t(100)}) {
        Result r = run(BodyReader::Mode::dot, msg, step, 1000);
        CHECK(r.done);
        CHECK(r.big);
        CHECK(r.consumed == msg.size() - 6);
        CHECK(r.body.size() <= 1000);
    }
}

TEST_CASE("DATA: Received: headers counted in the header section only") {
    const std::string msg =
        "Received: from a\r\n\tby b\r\nreceived: x\r\nRECEIVED:y\r\nSubject: s\r\n\r\nReceived: body\r\n.\r\n";
    for (std::size_t step : kSteps) {
        Result r = run(BodyReader::Mode::dot, msg, step);
        CHECK(r.done);
        CHECK(r.received == 3);
    }
    Result r = run(BodyReader::Mode::dot, "Received-SPF: pass\r\nX-Received: a\r\n\r\n.\r\n", 1);
    CHECK(r.received == 0);
}

TEST_CASE("BDAT raw: no unstuffing, no end marker, CRLF may straddle chunks") {
    const std::string msg = "a\r\n.\r\n..b\r\n";
    for (std::size_t step : kSteps) {
        Result r = run(BodyReader::Mode::raw, msg, step);
        CHECK_FALSE(r.done);
        CHECK(r.consumed == msg.size());
        CHECK(r.body == msg);
        CHECK_FALSE(r.bare);
    }
}

TEST_CASE("BDAT raw: bare CR/LF and dangling CR are refused") {
    for (const char* bad : {"a\nb\r\n", "a\rb\r\n", "a\r\n\r", "\r", "a\r\r\n"}) {
        for (std::size_t step : kSteps) {
            Result r = run(BodyReader::Mode::raw, bad, step);
            CHECK(r.bare);
        }
    }
}

TEST_CASE("DATA/BDAT: missing Message-ID:/Date: added at the end of the header section, in every chunking") {
    const mta::MissingHeaders add{"<20261128120000.0000000000000001@mx>", "Sat, 28 Nov 2026 12:00:00 +0000"};
    const std::string added = "Message-ID: <20261128120000.0000000000000001@mx>\r\nDate: Sat, 28 Nov 2026 12:00:00 +0000\r\n";
    const std::string msg = "Subject: s\r\n\r\n..stuffed\r\nMessage-ID: <body@x>\r\n";
    for (std::size_t step : kSteps) {
        Result r = run(BodyReader::Mode::dot, msg + ".\r\n", step, 1 << 20, add);
        CHECK(r.done);
        CHECK(r.body == "Subject: s\r\n" + added + "\r\n.stuffed\r\nMessage-ID: <body@x>\r\n");
        CHECK(r.size == msg.size() - 1);  // ours are not the client's bytes
        Result b = run(BodyReader::Mode::raw, msg, step, 1 << 20, add);
        CHECK(b.body == "Subject: s\r\n" + added + "\r\n..stuffed\r\nMessage-ID: <body@x>\r\n");
        // All headers, no body: at the end, before the end marker (DATA) or after the last chunk (BDAT).
        CHECK(run(BodyReader::Mode::dot, "Subject: s\r\n.\r\n", step, 1 << 20, add).body == "Subject: s\r\n" + added);
        CHECK(run(BodyReader::Mode::dot, ".\r\n", step, 1 << 20, add).body == added);
        CHECK(run(BodyReader::Mode::raw, "Subject: s\r\n", step, 1 << 20, add).body == "Subject: s\r\n" + added);
        // Present ones are kept, whatever their case; nothing is added for relayed mail.
        const std::string both = "DATE: d\r\nmessage-id: <m@x>\r\n\r\nb\r\n";
        CHECK(run(BodyReader::Mode::dot, both + ".\r\n", step, 1 << 20, add).body == both);
        CHECK(run(BodyReader::Mode::dot, msg + ".\r\n", step).body == "Subject: s\r\n\r\n.stuffed\r\nMessage-ID: <body@x>\r\n");
    }
    // A refused body gets nothing added (and is thrown away anyway).
    Result bad = run(BodyReader::Mode::dot, "Subject: s\n\r\n.\r\n", 1, 1 << 20, add);
    CHECK(bad.bare);
    CHECK(bad.body.find("Message-ID") == std::string::npos);
}
