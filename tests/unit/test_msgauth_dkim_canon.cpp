// Unit tests for DKIM canonicalization: the RFC 6376 §3.4.5 example, the empty-body hashes from the
// RFC errata, bare LF, l=, bottom-up h= selection with oversigning, and chunking independence.
#include <doctest/doctest.h>

#include <string>

#include "msgauth/dkim_canon.h"
#include "msgauth/dkim_crypto.h"

using namespace mta::msgauth;

namespace {

std::string body(DkimCanon c, std::string_view in, std::size_t step = 0, std::optional<uint64_t> limit = {}) {
    BodyCanonicalizer b(c, limit);
    std::string out;
    if (step == 0) step = in.size() + 1;
    for (std::size_t i = 0; i < in.size(); i += step) b.feed(in.substr(i, step), out);
    b.finish(out);
    return out;
}

std::string header(DkimCanon c, std::string_view raw) {
    std::string out;
    canon_header(c, raw, true, out);
    return out;
}

// RFC 6376 §3.4.5.
const std::string kExample =
    "A: X\r\n"
    "B : Y\t\r\n"
    "\tZ  \r\n"
    "\r\n"
    " C \r\n"
    "D \t E\r\n"
    "\r\n"
    "\r\n";

}  // namespace

TEST_CASE("RFC 6376 example: relaxed and simple, headers and body") {
    HeaderSection hs;
    std::string err;
    REQUIRE(parse_header_section(kExample, hs, err));
    REQUIRE(hs.fields.size() == 2);
    CHECK(hs.fields[0].name == "A");
    CHECK(hs.fields[1].name == "B");
    CHECK(hs.fields[1].raw == "B : Y\t\r\n\tZ  ");
    CHECK(hs.fields[1].value() == " Y\t\r\n\tZ  ");
    std::string_view b = std::string_view(kExample).substr(hs.body_offset);
    CHECK(b == " C \r\nD \t E\r\n\r\n\r\n");

    CHECK(header(DkimCanon::relaxed, hs.fields[0].raw) == "a:X\r\n");
    CHECK(header(DkimCanon::relaxed, hs.fields[1].raw) == "b:Y Z\r\n");
    CHECK(header(DkimCanon::simple, hs.fields[1].raw) == "B : Y\t\r\n\tZ  \r\n");
    CHECK(body(DkimCanon::relaxed, b) == " C\r\nD E\r\n");
    CHECK(body(DkimCanon::simple, b) == " C \r\nD \t E\r\n");
}

TEST_CASE("empty bodies hash as the RFC 6376 errata say") {
    CHECK(body(DkimCanon::simple, "") == "\r\n");
    CHECK(body(DkimCanon::relaxed, "") == "");
    CHECK(body(DkimCanon::simple, "\r\n\r\n") == "\r\n");
    CHECK(body(DkimCanon::relaxed, " \t\r\n\r\n") == "");
    CHECK(base64_encode(sha256(body(DkimCanon::simple, ""))) == "frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY=");
    CHECK(base64_encode(sha256(body(DkimCanon::relaxed, ""))) == "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
}

TEST_CASE("body: missing final CRLF, bare LF, bare CR, inner empty lines") {
    CHECK(body(DkimCanon::simple, "abc") == "abc\r\n");
    CHECK(body(DkimCanon::relaxed, "abc  ") == "abc\r\n");
    CHECK(body(DkimCanon::simple, "a\nb\n\n") == "a\r\nb\r\n");
    CHECK(body(DkimCanon::relaxed, "a \n\n\nb \n") == "a\r\n\r\n\r\nb\r\n");
    CHECK(body(DkimCanon::simple, "a\rb\r\n") == "a\rb\r\n");
    CHECK(body(DkimCanon::simple, "a\r") == "a\r\r\n");
    CHECK(body(DkimCanon::relaxed, "  lead\t\tand  inner  \r\n") == " lead and inner\r\n");
    CHECK(body(DkimCanon::relaxed, "x\r\n \t \r\ny\r\n") == "x\r\n\r\ny\r\n");
}

TEST_CASE("body: the result does not depend on the chunking") {
    const std::string inputs[] = {kExample, "a\r\n\r\n \r\nb \t\r\r\n\r\n", "\r\r\r\n\n \n", "x  \r", " \t\r\n\r"};
    for (const std::string& in : inputs) {
        for (DkimCanon c : {DkimCanon::simple, DkimCanon::relaxed}) {
            const std::string whole = body(c, in);
            for (std::size_t step = 1; step <= in.size(); step++) CHECK(body(c, in, step) == whole);
        }
    }
}

TEST_CASE("body: l= truncates the canonical output, canonical_size counts it all") {
    BodyCanonicalizer b(DkimCanon::relaxed, 5);
    std::string out;
    b.feed("hello   world\r\n\r\n", out);
    b.finish(out);
    CHECK(out == "hello");
    CHECK(b.canonical_size() == 13);
    CHECK(body(DkimCanon::simple, "ab\r\n", 1, 0) == "");
    CHECK(body(DkimCanon::simple, "ab\r\n", 3, 100) == "ab\r\n");
}

TEST_CASE("header section: LF line ends, continuation, no body, odd lines") {
    HeaderSection hs;
    std::string err;
    REQUIRE(parse_header_section("Subject: a\n b\nFrom: x\n\nbody\n", hs, err));
    REQUIRE(hs.fields.size() == 2);
    CHECK(hs.fields[0].raw == "Subject: a\r\n b");
    CHECK(hs.body_offset == 23);

    REQUIRE(parse_header_section("From: x\r\nTo: y", hs, err));
    CHECK(hs.fields.size() == 2);
    CHECK(hs.body_offset == 14);

    REQUIRE(parse_header_section(" leading: fold\r\nno colon here\r\nFrom x: y\r\nX-A\t: v\r\n\r\n", hs, err));
    REQUIRE(hs.fields.size() == 4);
    CHECK(hs.fields[0].name.empty());
    CHECK(hs.fields[1].name.empty());
    CHECK(hs.fields[2].name.empty());
    CHECK(hs.fields[3].name == "X-A");
    CHECK(header(DkimCanon::relaxed, hs.fields[3].raw) == "x-a:v\r\n");

    REQUIRE(parse_header_section("", hs, err));
    CHECK(hs.fields.empty());
    REQUIRE(parse_header_section("\r\nbody", hs, err));
    CHECK(hs.fields.empty());
    CHECK(hs.body_offset == 2);
}

TEST_CASE("header section: bounded") {
    HeaderSection hs;
    std::string err;
    std::string many;
    for (int i = 0; i <= 10000; i++) many += "X: y\r\n";
    CHECK_FALSE(parse_header_section(many, hs, err));
    CHECK(err == "too many header fields");
    std::string big = "X: " + std::string(kMaxHeaderBytes, 'a') + "\r\n\r\n";
    CHECK_FALSE(parse_header_section(big, hs, err));
    CHECK(err == "header section too large");
}

TEST_CASE("h= selection: bottom up, repeats, oversigning, case") {
    HeaderSection hs;
    std::string err;
    REQUIRE(parse_header_section("Received: 1\r\nTo: a\r\nFrom: f\r\nto: b\r\nSubject: s\r\n\r\n", hs, err));
    auto picked = select_headers(hs.fields, {"to", "from", "TO", "to", "cc"});
    REQUIRE(picked.size() == 5);
    CHECK(picked[0]->raw == "to: b");
    CHECK(picked[1]->raw == "From: f");
    CHECK(picked[2]->raw == "To: a");
    CHECK(picked[3] == nullptr);
    CHECK(picked[4] == nullptr);

    std::string data = canonical_header_data(DkimCanon::relaxed, hs.fields, {"from", "to", "to", "from"},
                                             "DKIM-Signature: v=1;\r\n b=");
    CHECK(data == "from:f\r\nto:b\r\nto:a\r\ndkim-signature:v=1; b=");
    data = canonical_header_data(DkimCanon::simple, hs.fields, {"subject"}, "DKIM-Signature: b=");
    CHECK(data == "Subject: s\r\nDKIM-Signature: b=");
}
