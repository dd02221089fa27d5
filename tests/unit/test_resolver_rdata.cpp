// Unit tests for resolver/rdata.cpp: query-name validation and RDATA decoding, including truncated
// and hostile wire data.
#include <doctest/doctest.h>

#include <string>

#include "resolver/rdata.h"

using namespace mta::resolver;
using namespace std::string_literals;

namespace {
std::string wire(std::initializer_list<std::string> labels) {
    std::string out;
    for (auto& l : labels) {
        out.push_back(char(l.size()));
        out += l;
    }
    out.push_back('\0');
    return out;
}
}  // namespace

TEST_CASE("normalize_name accepts hostnames and service names, lower-cased, trailing dot dropped") {
    CHECK(normalize_name("Example.COM") == "example.com");
    CHECK(normalize_name("mx1.example.com.") == "mx1.example.com");
    CHECK(normalize_name("_25._tcp.mx.example.com") == "_25._tcp.mx.example.com");
    CHECK(normalize_name("4.3.2.1.in-addr.arpa") == "4.3.2.1.in-addr.arpa");
    CHECK(normalize_name("xn--bcher-kva.example") == "xn--bcher-kva.example");
    CHECK(normalize_name("localhost") == "localhost");
    CHECK(normalize_name(std::string(63, 'a') + ".example") == std::string(63, 'a') + ".example");
}

TEST_CASE("normalize_name refuses what is not a DNS hostname") {
    CHECK_FALSE(normalize_name(""));
    CHECK_FALSE(normalize_name("."));
    CHECK_FALSE(normalize_name(".example.com"));
    CHECK_FALSE(normalize_name("example..com"));
    CHECK_FALSE(normalize_name("example.com.."));
    CHECK_FALSE(normalize_name("exa mple.com"));
    CHECK_FALSE(normalize_name("exa\\mple.com"));
    CHECK_FALSE(normalize_name("b\xc3\xbc" "cher.example"));
    CHECK_FALSE(normalize_name("a\0b.example"s));
    CHECK_FALSE(normalize_name("a\nb.example"));
    CHECK_FALSE(normalize_name(std::string(64, 'a') + ".example"));
    std::string long_name;
    while (long_name.size() < 256) long_name += "abcdefg.";
    long_name.resize(256);
    long_name.back() = 'x';
    CHECK_FALSE(normalize_name(long_name));
    std::string ok_name = long_name.substr(0, 255);
    if (ok_name.back() == '.') ok_name.back() = 'x';
    CHECK(normalize_name(ok_name));
}

TEST_CASE("supported_qtype is the MTA's list only") {
    for (uint64_t q : {1, 12, 15, 16, 28, 52}) CHECK(supported_qtype(q));
    for (uint64_t q : {0, 2, 5, 6, 33, 43, 48, 255, 65536 + 1}) CHECK_FALSE(supported_qtype(q));
}

TEST_CASE("decode_wire_name") {
    std::size_t off = 0;
    std::string w = wire({"MX", "Example", "com"});
    CHECK(decode_wire_name(w, off) == "mx.example.com");
    CHECK(off == w.size());
    off = 0;
    CHECK(decode_wire_name("\0"s, off) == ".");
    CHECK(off == 1);
    off = 0;
    CHECK_FALSE(decode_wire_name("", off));
    CHECK_FALSE(decode_wire_name("\x03" "abc", off));              // no root label
    CHECK_FALSE(decode_wire_name("\x05" "ab\0"s, off));            // label runs past the end
    CHECK_FALSE(decode_wire_name("\xc0\x0c"s, off));               // compression pointer
    CHECK_FALSE(decode_wire_name("\x40" + std::string(64, 'a') + "\0"s, off));  // label > 63
    CHECK_FALSE(decode_wire_name("\x03" "a.b\0"s, off));           // dot inside a label
    CHECK_FALSE(decode_wire_name("\x03" "a b\0"s, off));
    CHECK_FALSE(decode_wire_name("\x03" "a\0b\0"s, off));
    CHECK(off == 0);  // untouched on failure
    std::string big;
    for (int i = 0; i < 5; i++) big += "\x3f" + std::string(63, 'a');
    big.push_back('\0');
    CHECK_FALSE(decode_wire_name(big, off));  // 321 bytes on the wire > 255
}

TEST_CASE("A and AAAA") {
    CHECK(rdata_to_text(kTypeA, "\xc0\x00\x02\x01"s) == "192.0.2.1");
    CHECK_FALSE(rdata_to_text(kTypeA, "\xc0\x00\x02"s));
    CHECK_FALSE(rdata_to_text(kTypeA, "\xc0\x00\x02\x01\x00"s));
    CHECK_FALSE(rdata_to_text(kTypeA, ""));
    std::string v6("\x20\x01\x0d\xb8" "\0\0\0\0" "\0\0\0\0" "\0\0\0\x01"s);
    CHECK(rdata_to_text(kTypeAAAA, v6) == "2001:db8::1");
    CHECK_FALSE(rdata_to_text(kTypeAAAA, v6.substr(0, 15)));
    CHECK_FALSE(rdata_to_text(kTypeAAAA, v6 + "x"));
}

TEST_CASE("MX, including null MX and hostile exchange names") {
    CHECK(rdata_to_text(kTypeMX, "\x00\x0a"s + wire({"MX1", "example", "com"})) == "10 mx1.example.com");
    CHECK(rdata_to_text(kTypeMX, "\xff\xff"s + wire({"a"})) == "65535 a");
    CHECK(rdata_to_text(kTypeMX, "\x00\x00\x00"s) == "0 .");
    CHECK_FALSE(rdata_to_text(kTypeMX, "\x00\x0a"s));
    CHECK_FALSE(rdata_to_text(kTypeMX, "\x00"s));
    CHECK_FALSE(rdata_to_text(kTypeMX, "\x00\x0a"s + wire({"mx", "example"}) + "x"));  // trailing bytes
    CHECK_FALSE(rdata_to_text(kTypeMX, "\x00\x0a\xc0\x0c"s));
    CHECK_FALSE(rdata_to_text(kTypeMX, "\x00\x0a"s + wire({"mx;rm -rf", "example"})));
    CHECK_FALSE(rdata_to_text(kTypeMX, "\x00\x0a"s + wire({"mx\r\nDATA", "example"})));
}

TEST_CASE("PTR") {
    CHECK(rdata_to_text(kTypePTR, wire({"Host", "example", "net"})) == "host.example.net");
    CHECK_FALSE(rdata_to_text(kTypePTR, "\0"s));  // the root is no host name
    CHECK_FALSE(rdata_to_text(kTypePTR, wire({"host"}) + "\0"s));
    CHECK_FALSE(rdata_to_text(kTypePTR, ""));
}

TEST_CASE("TXT concatenates character-strings") {
    CHECK(rdata_to_text(kTypeTXT, "\x09v=STSv1; \x0bid=20240101"s) == "v=STSv1; id=20240101");
    CHECK(rdata_to_text(kTypeTXT, "\0"s) == "");
    CHECK(rdata_to_text(kTypeTXT, "\x03" "a\0b"s) == "a\0b"s);  // binary passes through, length-framed
    CHECK_FALSE(rdata_to_text(kTypeTXT, ""));
    CHECK_FALSE(rdata_to_text(kTypeTXT, "\x05" "abc"s));
    CHECK_FALSE(rdata_to_text(kTypeTXT, "\x03" "abc\x02" "a"s));
    std::string big;
    for (int i = 0; i < 16; i++) big += "\xff" + std::string(255, 'x');  // 4080 bytes of text
    CHECK_FALSE(rdata_to_text(kTypeTXT, big));
    CHECK(rdata_to_text(kTypeTXT, big.substr(0, 15 * 256))->size() == 15 * 255);
}

TEST_CASE("TLSA") {
    CHECK(rdata_to_text(kTypeTLSA, "\x03\x01\x01\xab\xcd\xef\x00"s) == "3 1 1 abcdef00");
    CHECK(rdata_to_text(kTypeTLSA, "\x02\x00\x02\x01"s) == "2 0 2 01");
    CHECK(rdata_to_text(kTypeTLSA, "\xff\xff\xff\x10"s) == "255 255 255 10");
    CHECK_FALSE(rdata_to_text(kTypeTLSA, "\x03\x01\x01"s));  // no association data
    CHECK_FALSE(rdata_to_text(kTypeTLSA, "\x03"s));
    CHECK_FALSE(rdata_to_text(kTypeTLSA, "\x03\x01\x01"s + std::string(2000, 'x')));  // > 4000 as hex
}

TEST_CASE("unsupported types are refused") {
    CHECK_FALSE(rdata_to_text(5, wire({"a", "b"})));
    CHECK_FALSE(rdata_to_text(0, ""));
}
