// Unit tests for smtp-client/smtp_body: CRLF normalisation and dot-stuffing, across chunk boundaries.
#include <doctest/doctest.h>

#include <cstdio>
#include <string>
#include <unistd.h>

#include "smtp-client/smtp_body.h"

using mta::smtp::BodyEncoder;
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
