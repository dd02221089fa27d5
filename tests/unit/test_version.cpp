// Unit tests for the shared --version/--help detection (common/version.cpp).
#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include "common/version.h"

using mta::InfoRequest;

namespace {

InfoRequest ask(std::vector<const char*> args) {
    args.insert(args.begin(), "prog");
    return mta::info_request(int(args.size()), const_cast<char* const*>(args.data()));
}

}  // namespace

TEST_CASE("--version and --help are found among the options, the first one wins") {
    CHECK(ask({}) == InfoRequest::none);
    CHECK(ask({"--version"}) == InfoRequest::version);
    CHECK(ask({"--help"}) == InfoRequest::help);
    CHECK(ask({"-c", "x.conf", "--help"}) == InfoRequest::help);
    CHECK(ask({"--help", "--version"}) == InfoRequest::help);
    CHECK(ask({"--version", "--help"}) == InfoRequest::version);
}

TEST_CASE("--version/--help: only the exact words, and not after --") {
    CHECK(ask({"-help"}) == InfoRequest::none);
    CHECK(ask({"--helpme"}) == InfoRequest::none);
    CHECK(ask({"--Version"}) == InfoRequest::none);
    CHECK(ask({"-t", "--", "--help"}) == InfoRequest::none);  // sendmail: a recipient, not an option
}

TEST_CASE("the version string is one printable word") {
    std::string v = mta::version();
    CHECK(!v.empty());
    CHECK(v.find_first_of(" \t\r\n") == std::string::npos);
}
