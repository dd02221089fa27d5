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
