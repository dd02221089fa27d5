// Unit tests for SASL PLAIN/LOGIN decoding (smtpd/smtpd_auth.cpp): strict base64, NUL-separated
// PLAIN fields, and refusal of CR/LF/NUL inside decoded values.
#include <doctest/doctest.h>

#include <string>

#include "smtpd/smtpd_auth.h"

using namespace mta::smtpd;
using namespace std::string_literals;

TEST_CASE("base64: strict decoding") {
    CHECK(base64_decode("") == ""s);
    CHECK(base64_decode("YQ==") == "a"s);
    CHECK(base64_decode("YWI=") == "ab"s);
    CHECK(base64_decode("YWJj") == "abc"s);
    CHECK(base64_decode("AGFsaWNlAHNlY3JldA==") == "\0alice\0secret"s);
    CHECK_FALSE(base64_decode("YQ"));          // padding required
    CHECK_FALSE(base64_decode("Y==="));        // '=' too early
    CHECK_FALSE(base64_decode("YQ==YWJj"));    // data after padding
    CHECK_FALSE(base64_decode("YW J"));        // whitespace
    CHECK_FALSE(base64_decode("not!base64"));
    CHECK_FALSE(base64_decode("=YWJ"));
    CHECK_FALSE(base64_decode("YR=="));        // non-zero padding bits
}

TEST_CASE("base64: round trip") {
    for (std::string s : {""s, "a"s, "ab"s, "abc"s, "Username:"s, "\xff\x00\x10"s})
        CHECK(base64_decode(base64_encode(s)) == s);
    CHECK(base64_encode("Username:") == "VXNlcm5hbWU6");
    CHECK(base64_encode("Password:") == "UGFzc3dvcmQ6");
}

TEST_CASE("PLAIN: fields") {
    auto c = parse_plain("\0alice\0secret"s);
    REQUIRE(c);
    CHECK(c->user == "alice");
    CHECK(c->password == "secret");
    c = parse_plain("alice\0alice\0secret"s);  // authzid equal to authcid is fine
    REQUIRE(c);
    CHECK(c->user == "alice");
}

TEST_CASE("PLAIN: refused shapes") {
    CHECK_FALSE(parse_plain("alice secret"s));                 // no NULs
    CHECK_FALSE(parse_plain("\0alice"s));                     // one NUL
    CHECK_FALSE(parse_plain("\0alice\0sec\0ret"s));          // a third NUL
    CHECK_FALSE(parse_plain("bob\0alice\0secret"s));          // proxy authorization not supported
    CHECK_FALSE(parse_plain("\0\0secret"s));                  // empty user
    CHECK_FALSE(parse_plain("\0alice\0"s));                   // empty password
    CHECK_FALSE(parse_plain("\0ali\rce\0secret"s));           // CR
    CHECK_FALSE(parse_plain("\0alice\0sec\nret"s));           // LF
    CHECK_FALSE(parse_plain("\0"s + std::string(256, 'u') + "\0p"s));  // over 255 bytes
}

TEST_CASE("LOGIN: values") {
    CHECK(valid_login_value("alice"));
    CHECK_FALSE(valid_login_value(""));
    CHECK_FALSE(valid_login_value("a\rb"));
    CHECK_FALSE(valid_login_value("a\nb"));
    CHECK_FALSE(valid_login_value("a\0b"s));
    CHECK_FALSE(valid_login_value(std::string(256, 'x')));
}
