// Unit tests for smtp-client/smtp_body: CRLF normalisation and dot-stuffing, across chunk boundaries;
// BDAT framing (no stuffing, same line ends, exact chunk sizes).
#include <doctest/doctest.h>

#include <cstdio>
#include <string>
#include <unistd.h>
#include <vector>

#include "smtp-client/smtp_body.h"

using mta::smtp::BdatEncoder;
using mta::smtp::BodyEncoder;
using mta::smtp::kBdatChunk;
using mta::smtp::body_has_8bit;

namespace {

std::string encode_whole(const std::string& in) {
    BodyEncoder e;
    std::string out;
    e.feed(in, out);
    e.finish(out);
    return out;
}

// Every split of the input into chunks of size n must give the same bytes.
std::string encode_chunked(const std::string& in, std::size_t n) {
    BodyEncoder e;
    std::string out;
    for (std::size_t i = 0; i < in.size(); i += n) e.feed(std::string_view(in).substr(i, n), out);
    e.finish(out);
    return out;
}

}  // namespace

TEST_CASE("smtp body: line endings") {
    CHECK(encode_whole("a\r\nb\r\n") == "a\r\nb\r\n.\r\n");
    CHECK(encode_whole("a\nb\n") == "a\r\nb\r\n.\r\n");
    CHECK(encode_whole("a\rb\r") == "a\r\nb\r\n.\r\n");
    CHECK(encode_whole("a\r\rb") == "a\r\n\r\nb\r\n.\r\n");
    CHECK(encode_whole("a\n\r\nb") == "a\r\n\r\nb\r\n.\r\n");
    CHECK(encode_whole("no newline") == "no newline\r\n.\r\n");
    CHECK(encode_whole("") == ".\r\n");
}

TEST_CASE("smtp body: dot-stuffing") {
    CHECK(encode_whole(".") == "..\r\n.\r\n");
    CHECK(encode_whole(".\r\n") == "..\r\n.\r\n");
    CHECK(encode_whole("a\r\n.\r\nb") == "a\r\n..\r\nb\r\n.\r\n");
    CHECK(encode_whole("..x\n.y") == "...x\r\n..y\r\n.\r\n");
    CHECK(encode_whole("a.b\r\n x.") == "a.b\r\n x.\r\n.\r\n");
    CHECK(encode_whole("a\r.b") == "a\r\n..b\r\n.\r\n");  // a bare CR ends the line too
}

TEST_CASE("smtp body: lines over 998 octets are broken with CRLF SPACE, in any chunking") {
    std::string exact(998, 'x');
    CHECK(encode_whole(exact + "\n") == exact + "\r\n.\r\n");
    std::string over(999, 'y');
    CHECK(encode_whole(over + "\n") == std::string(998, 'y') + "\r\n y\r\n.\r\n");
    // A stuffed dot counts: "..", then 996 more octets fill the line.
    std::string dotted = "." + std::string(998, 'z');
    CHECK(encode_whole(dotted) == ".." + std::string(996, 'z') + "\r\n zz\r\n.\r\n");
    std::string big(5000, 'q');
    for (std::size_t n : {1, 7, 998, 999, 4096}) {
        std::string out = encode_chunked("Subject: x\n\n" + big + "\nend\n", n);
        std::size_t start = 0, longest = 0, pieces = 0;
        for (std::size_t p; (p = out.find("\r\n", start)) != std::string::npos; start = p + 2) {
            longest = std::max(longest, p - start);
            pieces++;
        }
        CHECK(longest == 998);
        CHECK(pieces == 2 + 6 + 1 + 1);  // 2 header lines, 5000 octets in 6 lines, "end", the dot
    }
}

TEST_CASE("smtp body: chunk boundaries") {
    const std::string inputs[] = {
        "Subject: x\r\n\r\n.line\r\n..two\r\nbare\nlf\rcr\r\r\n.\r\nend.",
        "\r\n.\r\n.\n.\r.",
        std::string("a\r") + "\n.b",
    };
    for (const auto& in : inputs) {
        std::string whole = encode_whole(in);
        for (std::size_t n = 1; n <= in.size(); n++) CHECK(encode_chunked(in, n) == whole);
    }
    // The CR of a CRLF at the end of one chunk and the LF at the start of the next are one line end.
    BodyEncoder e;
    std::string out;
    e.feed("a\r", out);
    e.feed("\n.b", out);
    e.finish(out);
    CHECK(out == "a\r\n..b\r\n.\r\n");
}

TEST_CASE("smtp body: output has only CRLF line ends and no lone terminator") {
    std::string in;
    for (int i = 0; i < 2000; i++) in.push_back("a.\r\n\0x"[i * 7919 % 7]);
    std::string out = encode_whole(in);
    for (std::size_t i = 0; i < out.size(); i++) {
        if (out[i] == '\n') CHECK((i > 0 && out[i - 1] == '\r'));
        if (out[i] == '\r') CHECK((i + 1 < out.size() && out[i + 1] == '\n'));
    }
    // The only "CRLF . CRLF" is the terminator at the very end.
    CHECK(out.find("\r\n.\r\n") == out.size() - 5);
}

TEST_CASE("smtp body: body_has_8bit reads the whole file") {
    FILE* f = tmpfile();
    REQUIRE(f);
    int fd = fileno(f);
    CHECK_FALSE(body_has_8bit(fd));  // empty
    std::string ascii(200000, 'a');
    REQUIRE(pwrite(fd, ascii.data(), ascii.size(), 0) == ssize_t(ascii.size()));
    CHECK_FALSE(body_has_8bit(fd));
    REQUIRE(pwrite(fd, "\xe9", 1, 150000) == 1);  // past the first 64 KiB read
    CHECK(body_has_8bit(fd));
    fclose(f);
    CHECK_FALSE(body_has_8bit(-1));  // unreadable: the transaction's own read fails and defers
}

namespace {

// DATA output with the stuffing and terminator removed: what BDAT must carry.
std::string unstuffed(const std::string& in) {
    std::string d = encode_whole(in), out;
    d.resize(d.size() - 3);  // ".\r\n"
    bool bol = true;
    for (std::size_t i = 0; i < d.size(); i++) {
        if (bol && d[i] == '.') i++;  // the stuffed dot
        if (i < d.size()) out.push_back(d[i]);
        bol = i < d.size() && d[i] == '\n';
    }
    return out;
}

struct Chunk {
    std::size_t n;
    bool last;
    std::string data;
};

// Feed `in` in pieces of `feed` bytes, taking chunks whenever one is ready; parse the framing back.
std::vector<Chunk> bdat(const std::string& in, std::size_t chunk, std::size_t feed = 4096) {
    BdatEncoder e(chunk);
    std::string wire;
    for (std::size_t i = 0; i < in.size(); i += feed) {
        e.feed(std::string_view(in).substr(i, feed));
        while (e.next_chunk(wire)) {}
    }
    e.finish();
    while (e.next_chunk(wire)) {}
    CHECK(e.last_sent());
    CHECK_FALSE(e.next_chunk(wire));
    std::vector<Chunk> out;
    std::size_t p = 0;
    while (p < wire.size()) {
        std::size_t eol = wire.find("\r\n", p);
        REQUIRE(eol != std::string::npos);
        std::string cmd = wire.substr(p, eol - p);
        REQUIRE(cmd.rfind("BDAT ", 0) == 0);
        Chunk c;
        c.n = std::stoul(cmd.substr(5));
        c.last = cmd.size() > 5 && cmd.substr(cmd.size() - 5) == " LAST";
        CHECK(cmd == "BDAT " + std::to_string(c.n) + (c.last ? " LAST" : ""));
        REQUIRE(eol + 2 + c.n <= wire.size());
        c.data = wire.substr(eol + 2, c.n);
        p = eol + 2 + c.n;
        out.push_back(c);
    }
    return out;
}

std::string joined(const std::vector<Chunk>& cs) {
    std::string s;
    for (auto& c : cs) s += c.data;
    return s;
}

}  // namespace

TEST_CASE("bdat: no dot-stuffing, same line ends as DATA, no terminator") {
    BodyEncoder e(false);
    std::string out;
    e.feed(".a\n..b\r.\r\n.", out);
    e.finish(out);
    CHECK(out == ".a\r\n..b\r\n.\r\n.\r\n");
    auto cs = bdat("Subject: x\r\n\r\n.dot line\r\n.\r\nend", kBdatChunk);
    REQUIRE(cs.size() == 1);
    CHECK(cs[0].last);
    CHECK(cs[0].data == "Subject: x\r\n\r\n.dot line\r\n.\r\nend\r\n");
}

TEST_CASE("bdat: byte counts equal the unstuffed DATA encoding") {
    std::string in;
    for (unsigned i = 0; i < 300000; i++) in.push_back("a.\r\n\0x"[i * 7919u % 7]);
    for (std::size_t chunk : {std::size_t(1000), std::size_t(4096), kBdatChunk}) {
        for (std::size_t feed : {std::size_t(1), std::size_t(999), std::size_t(65536)}) {
            if (feed == 1 && chunk == kBdatChunk) continue;  // slow and adds nothing
            auto cs = bdat(in, chunk, feed);
            REQUIRE(!cs.empty());
            std::string want = unstuffed(in);
            CHECK(joined(cs) == want);
            for (std::size_t i = 0; i + 1 < cs.size(); i++) {
                CHECK(cs[i].n == chunk);
                CHECK_FALSE(cs[i].last);
            }
            CHECK(cs.back().last);
            CHECK(cs.back().n == want.size() - chunk * (cs.size() - 1));
        }
    }
}

TEST_CASE("bdat: a body of exactly one chunk, and the empty body") {
    std::string line = std::string(98, 'x') + "\r\n";
    std::string in;
    while (in.size() < 1000) in += line;  // 1000 bytes, already CRLF
    auto cs = bdat(in, 1000);
    REQUIRE(cs.size() == 1);
    CHECK(cs[0].last);
    CHECK(cs[0].n == 1000);
    cs = bdat(in + "y\r\n", 1000);  // one byte past: a full chunk, then the rest as LAST
    REQUIRE(cs.size() == 2);
    CHECK((cs[0].n == 1000 && !cs[0].last && cs[1].n == 3 && cs[1].last));
    cs = bdat("", kBdatChunk);
    REQUIRE(cs.size() == 1);
    CHECK((cs[0].n == 0 && cs[0].last));
}
