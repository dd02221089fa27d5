// Unit tests for smtp-client/local/local_maildir: unique names, CRLF->LF streaming, durable Maildir writes
// into a temporary directory, and errno classification.
#include <doctest/doctest.h>

#include <cerrno>
#include <cstdlib>
#include <dirent.h>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "common/fd.h"
#include "smtp-client/local/local_maildir.h"

using namespace mta;
using namespace mta::local;

namespace {

std::string convert(const std::vector<std::string>& chunks) {
    CrlfToLf c;
    std::string out;
    for (auto& s : chunks) c.feed(s, out);
    c.finish(out);
    return out;
}

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/test_local_XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() { std::string cmd = "rm -rf '" + path + "'"; (void)!system(cmd.c_str()); }
};

std::vector<std::string> list_dir(const std::string& p) {
    std::vector<std::string> out;
    DIR* d = opendir(p.c_str());
    if (!d) return out;
    while (dirent* e = readdir(d))
        if (e->d_name[0] != '.') out.push_back(e->d_name);
    closedir(d);
    return out;
}

std::string slurp(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

UniqueFd body_file(const TempDir& t, const std::string& content) {
    std::string p = t.path + "/body";
    { std::ofstream f(p, std::ios::binary); f << content; }
    return UniqueFd(open(p.c_str(), O_RDONLY | O_CLOEXEC));
}

}  // namespace

TEST_CASE("maildir unique name and host escaping") {
    CHECK(maildir_hostname("mx.example.org") == "mx.example.org");
    CHECK(maildir_hostname("a/b:c") == "a\\057b\\072c");
    CHECK(maildir_unique(1700000000, 42, 1234, 7, "host.example") == "1700000000.M42P1234Q7.host.example");
}

TEST_CASE("CRLF to LF") {
    CHECK(convert({"a\r\nb\r\n"}) == "a\nb\n");
    CHECK(convert({"a\r", "\nb"}) == "a\nb");              // CRLF split across chunks
    CHECK(convert({"a\rb\r\n"}) == "a\rb\n");               // lone CR kept
    CHECK(convert({"a\r"}) == "a\r");                        // trailing CR flushed at the end
    CHECK(convert({"a\r", "b"}) == "a\rb");                  // lone CR at a chunk edge kept
    CHECK(convert({"\r\r\n"}) == "\r\n");
    CHECK(convert({"x\n"}) == "x\n");                        // bare LF untouched
    CHECK(convert({"", "\r", "", "\n"}) == "\n");
}

TEST_CASE("errno classification") {
    CHECK(failure_outcome(ENOSPC, "write x").status == ipc::DeliveryStatus::deferred);
    CHECK(failure_outcome(ENOSPC, "write x").text.rfind("4.3.0 write x: ", 0) == 0);
    CHECK(failure_outcome(EIO, "x").status == ipc::DeliveryStatus::deferred);
    CHECK(failure_outcome(EDQUOT, "x").text.rfind("4.2.2 ", 0) == 0);
    CHECK(failure_outcome(EACCES, "x").status == ipc::DeliveryStatus::deferred);
    CHECK(failure_outcome(ENAMETOOLONG, "x").status == ipc::DeliveryStatus::bounced);
    CHECK(failure_outcome(ENAMETOOLONG, "x").text.rfind("5.", 0) == 0);
    CHECK(failure_outcome(EFBIG, "x").status == ipc::DeliveryStatus::bounced);
}

TEST_CASE("write into a fresh maildir") {
    TempDir t;
    std::string root = t.path + "/mail";
    REQUIRE(mkdir(root.c_str(), 0700) == 0);
    UniqueFd rootfd(open(root.c_str(), O_RDONLY | O_DIRECTORY));
    UniqueFd body = body_file(t, "Subject: hi\r\n\r\nline1\r\nlone\rCR\r\n");
    MaildirWrite w{rootfd.get(), "alice", "Return-Path: <bob@example.org>\n", body.get(), "1.M2P3Q4.host"};
    Outcome o = write_maildir(w);
    REQUIRE(o.status == ipc::DeliveryStatus::delivered);
    CHECK(o.text == "2.0.0 delivered to maildir");
    const std::string expect = "Return-Path: <bob@example.org>\nSubject: hi\n\nline1\nlone\rCR\n";
    CHECK(o.file == "alice/new/1.M2P3Q4.host,S=" + std::to_string(expect.size()));
    CHECK(slurp(root + "/" + o.file) == expect);
    CHECK(list_dir(root + "/alice/tmp").empty());
    CHECK(list_dir(root + "/alice/cur").empty());
    CHECK(list_dir(root + "/alice/new").size() == 1);
    struct stat st;
    REQUIRE(stat((root + "/alice").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0700);

    // Same body fd again (pread from 0): a second file with identical content.
    w.unique = "1.M2P3Q5.host";
    Outcome o2 = write_maildir(w);
    REQUIRE(o2.status == ipc::DeliveryStatus::delivered);
    CHECK(slurp(root + "/" + o2.file) == expect);
    CHECK(list_dir(root + "/alice/new").size() == 2);
}

TEST_CASE("large body crosses read chunks") {
    TempDir t;
    UniqueFd rootfd(open(t.path.c_str(), O_RDONLY | O_DIRECTORY));
    std::string in, expect = "H\n";
    for (int i = 0; i < 30000; i++) {  // ~300 KiB: several 64 KiB preads, CRLFs land on chunk edges
        in += "line " + std::to_string(i) + "\r\n";
        expect += "line " + std::to_string(i) + "\n";
    }
    UniqueFd body = body_file(t, in);
    Outcome o = write_maildir({rootfd.get(), "bob", "H\n", body.get(), "u1"});
    REQUIRE(o.status == ipc::DeliveryStatus::delivered);
    CHECK(slurp(t.path + "/" + o.file) == expect);
}

TEST_CASE("failures leave no partial file") {
    TempDir t;
    UniqueFd rootfd(open(t.path.c_str(), O_RDONLY | O_DIRECTORY));
    SUBCASE("mailbox path is a symlink: refused, not followed") {
        REQUIRE(symlink("/tmp", (t.path + "/eve").c_str()) == 0);
        UniqueFd body = body_file(t, "x\r\n");
        Outcome o = write_maildir({rootfd.get(), "eve", "H\n", body.get(), "u1"});
        CHECK(o.status == ipc::DeliveryStatus::deferred);
    }
    SUBCASE("unreadable body: deferred, tmp/ cleaned") {
        UniqueFd dirfd(open(t.path.c_str(), O_RDONLY | O_DIRECTORY));  // read() on a dir fails: EISDIR
        Outcome o = write_maildir({rootfd.get(), "carol", "H\n", dirfd.get(), "u1"});
        CHECK(o.status == ipc::DeliveryStatus::deferred);
        CHECK(o.text.find("read queue file") != std::string::npos);
        CHECK(list_dir(t.path + "/carol/tmp").empty());
        CHECK(list_dir(t.path + "/carol/new").empty());
    }
    SUBCASE("over-long file name: bounced") {
        UniqueFd body = body_file(t, "x\r\n");
        Outcome o = write_maildir({rootfd.get(), "dave", "H\n", body.get(), std::string(300, 'u')});
        CHECK(o.status == ipc::DeliveryStatus::bounced);
        CHECK(list_dir(t.path + "/dave/tmp").empty());
    }
}
