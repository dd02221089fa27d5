// Unit tests for common/file_util: whole-file reads with a size bound.
#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <unistd.h>

#include "common/file_util.h"

using namespace mta;

TEST_CASE("read_file: whole file, size bound, missing file") {
    std::string path = "/tmp/mta-unit-file-util-" + std::to_string(getpid());
    std::string body(20000, 'x');
    body += "end\n";
    std::ofstream(path, std::ios::binary) << body;
    std::string out;
    CHECK(read_file(path, out));
    CHECK(out == body);
    CHECK(read_file(path, out, body.size()));
    CHECK(out == body);
    CHECK_FALSE(read_file(path, out, body.size() - 1));
    std::remove(path.c_str());
    CHECK_FALSE(read_file(path, out));
}

TEST_CASE("copy_range: a middle range, the input's offset untouched, and a range past the end fails") {
    char in_path[] = "/tmp/mta-copy-in-XXXXXX", out_path[] = "/tmp/mta-copy-out-XXXXXX";
    int in = mkstemp(in_path), out = mkstemp(out_path);
    REQUIRE(in >= 0);
    REQUIRE(out >= 0);
    std::string data(200000, 'x');
    for (std::size_t i = 0; i < data.size(); i++) data[i] = char('a' + i % 26);
    REQUIRE(mta::write_all(in, data));
    REQUIRE(lseek(in, 7, SEEK_SET) == 7);
    CHECK(mta::copy_range(in, out, 100, 150000));
    CHECK(lseek(in, 0, SEEK_CUR) == 7);
    std::string got;
    REQUIRE(mta::read_file(out_path, got));
    CHECK(got == data.substr(100, 150000 - 100));
    CHECK(mta::copy_range(in, out, 5, 5));  // empty: nothing to do
    CHECK_FALSE(mta::copy_range(in, out, 199990, 200010));
    close(in);
    close(out);
    unlink(in_path);
    unlink(out_path);
}
