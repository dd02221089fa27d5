// Unit tests for queue-manager/sendmail/sendmail_opts: sendmail(1)'s command line as Postfix reads it.
#include <doctest/doctest.h>

#include "common/protocol.h"
#include "queue-manager/sendmail/sendmail_opts.h"

using namespace mta::sendmail;
using V = std::vector<std::string>;

namespace {
SendmailArgs ok(const V& argv) {
    SendmailArgs a;
    std::string err;
    bool parsed = parse_sendmail_args(argv, a, err);
    CHECK_MESSAGE(parsed, err);
    return a;
}
std::string refused(const V& argv) {
    SendmailArgs a;
    std::string err;
    if (parse_sendmail_args(argv, a, err)) return "";
    CHECK(!err.empty());
    return err;
}
}  // namespace

TEST_CASE("sendmail args: common options") {
    auto a = ok({"/usr/sbin/sendmail", "-t", "-oi", "-f", "me@x", "-F", "Me", "-C", "/etc/x.conf", "u@y"});
    CHECK(a.mode == SendmailMode::deliver);
    CHECK(a.extract);
    CHECK_FALSE(a.dot_ends);
    CHECK(a.have_sender);
    CHECK(a.sender == "me@x");
    CHECK(a.full_name == "Me");
    CHECK(a.config == "/etc/x.conf");
    CHECK(a.rcpts == V{"u@y"});
    a = ok({"sendmail", "-ti", "-rme@x", "-oQ/tmp", "-v", "-em", "-B8BITMIME", "u@y"});
    CHECK(a.extract);
    CHECK_FALSE(a.dot_ends);
    CHECK(a.sender == "me@x");
    a = ok({"sendmail", "-f", "", "u@y"});
    CHECK(a.have_sender);
    CHECK(a.sender.empty());
    a = ok({"sendmail", "u@y", "-i"});  // options after recipients, as glibc getopt allows
    CHECK_FALSE(a.dot_ends);
    CHECK(a.rcpts == V{"u@y"});
    a = ok({"sendmail", "--", "-i", "u@y"});
    CHECK(a.dot_ends);
    CHECK(a.rcpts == V{"-i", "u@y"});
}

TEST_CASE("sendmail args: recipient lists in one argument") {
    auto a = ok({"sendmail", "a@x, b@y", "Carol <c@z>", "local"});
    CHECK(a.rcpts == V{"a@x", "b@y", "c@z", "local"});
    a = ok({"sendmail", "bad address@x"});
    CHECK(a.rcpts == V{"bad address@x"});  // kept whole: refused later as a bad address
}

TEST_CASE("sendmail args: DSN options") {
    using namespace mta::ipc;
    auto a = ok({"sendmail", "-N", "success,failure", "-R", "hdrs", "-V", "env42", "u@y"});
    CHECK(a.notify == (kNotifySuccess | kNotifyFailure));
    CHECK(a.ret == 2);
    CHECK(a.envid == "env42");
    CHECK(ok({"sendmail", "-NNEVER", "-RFULL", "u@y"}).notify == kNotifyNever);
    CHECK(ok({"sendmail", "-N", "delay, failure", "u@y"}).notify == (kNotifyDelay | kNotifyFailure));
    CHECK(ok({"sendmail", "-R", "full", "u@y"}).ret == 1);
    CHECK(refused({"sendmail", "-N", "never,success", "u@y"}).find("-N") != std::string::npos);
    CHECK(!refused({"sendmail", "-N", "", "u@y"}).empty());
    CHECK(!refused({"sendmail", "-N", "sometimes", "u@y"}).empty());
    CHECK(!refused({"sendmail", "-R", "body", "u@y"}).empty());
    CHECK(!refused({"sendmail", "-V", "with space", "u@y"}).empty());
    CHECK(!refused({"sendmail", "-B", "BINARYMIME", "u@y"}).empty());
}

TEST_CASE("sendmail args: modes and refusals") {
    CHECK(ok({"sendmail", "-bp"}).mode == SendmailMode::list_queue);
    CHECK(ok({"/usr/bin/mailq"}).mode == SendmailMode::list_queue);
    CHECK(ok({"sendmail", "-q"}).mode == SendmailMode::flush_queue);
    CHECK(ok({"sendmail", "-q30m", "u@y"}).mode == SendmailMode::deliver);  // interval: ignored
    CHECK(ok({"sendmail", "-bi"}).mode == SendmailMode::newaliases);
    CHECK(ok({"sendmail", "-I"}).mode == SendmailMode::newaliases);
    CHECK(ok({"/usr/bin/newaliases"}).mode == SendmailMode::newaliases);
    CHECK(ok({"mailq", "-bm", "u@y"}).mode == SendmailMode::deliver);
    CHECK(refused({"sendmail", "-bs"}).find("-bs") != std::string::npos);
    CHECK(refused({"sendmail", "-bv", "u@y"}).find("-bv") != std::string::npos);
    CHECK(refused({"sendmail", "-bd", "-q1h"}).find("-bd") != std::string::npos);
    CHECK(refused({"sendmail", "-qRexample.com"}).find("-qR") != std::string::npos);
    CHECK(refused({"sendmail", "-qSfoo"}).find("-qS") != std::string::npos);
    CHECK(refused({"sendmail", "-X", "/tmp/log", "u@y"}).find("-X") != std::string::npos);
    CHECK(refused({"sendmail", "-Z"}).find("-Z") != std::string::npos);
    CHECK(refused({"sendmail", "-f"}).find("needs a value") != std::string::npos);
    CHECK(!refused({"sendmail", "-o"}).empty());
}
