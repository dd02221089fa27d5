// fill-queue: puts many messages straight into the queue of a stopped MTA, for the backlog benchmark
// (tests/bench, workload `backlog`) and the recovery tests. Not installed; built by `make check` and
// `make bench` as build/tests/fill-queue.
//
//   fill-queue [-n COUNT] [-s BYTES] [-d DOMAIN] [-a SECONDS] [-S SECONDS] QUEUE_DIR
//
// QUEUE_DIR is <spool_dir>/queue of an MTA that has run once and is stopped now (mtad must not run: the
// queue has one writer). Each message is from <backlog@fill.test> to one recipient user<N>@DOMAIN
// (default backlog.test), its body BYTES long (default 512), and deferred once: its next attempt is at
// now + SECONDS (-a, may be negative; default 86400) plus N modulo the spread (-S, default 3600), so a
// backlog can be due now, later, or both. Run as root, it becomes the owner of QUEUE_DIR first, so the
// files it makes belong to the queue's user.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "common/fd.h"
#include "queue-manager/qid.h"
#include "queue-manager/store.h"

using namespace mta;
using namespace mta::queue;

namespace {

[[noreturn]] void usage() {
    fprintf(stderr, "usage: fill-queue [-n COUNT] [-s BYTES] [-d DOMAIN] [-a SECONDS] [-S SECONDS] QUEUE_DIR\n");
    exit(2);
}

[[noreturn]] void die(const std::string& what) {
    fprintf(stderr, "fill-queue: %s\n", what.c_str());
    exit(1);
}

long long number(const char* s, long long min, long long max) {
    char* end = nullptr;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) usage();
    return v;
}

std::string body_text(uint64_t n, const std::string& rcpt, std::size_t size) {
    std::string s = "From: <backlog@fill.test>\r\nTo: <" + rcpt + ">\r\nSubject: backlog " + std::to_string(n) +
                    "\r\nMessage-ID: <" + std::to_string(n) + ".backlog@fill.test>\r\n\r\n";
    static const std::string line = "a backlog message, put into the queue by fill-queue.\r\n";
    while (s.size() + line.size() <= size) s += line;
    while (s.size() + 2 < size) s += 'x';
    if (s.size() < size) s += "\r\n";
    return s;
}

}  // namespace

int main(int argc, char** argv) {
    long long count = 1000, size = 512, after = 86400, spread = 3600;
    std::string domain = "backlog.test";
    int c;
    while ((c = getopt(argc, argv, "n:s:d:a:S:")) != -1) {
        switch (c) {
        case 'n': count = number(optarg, 1, 100000000); break;
        case 's': size = number(optarg, 200, 100 << 20); break;
        case 'd': domain = optarg; break;
        case 'a': after = number(optarg, -(1LL << 32), 1LL << 32); break;
        case 'S': spread = number(optarg, 1, 1LL << 32); break;
        default: usage();
        }
    }
    if (optind + 1 != argc) usage();
    std::string dir = argv[optind];
    struct stat st;
    if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) die(dir + ": not a directory");
    if (geteuid() == 0 && (setgid(st.st_gid) != 0 || setuid(st.st_uid) != 0))
        die(std::string("cannot become the owner of ") + dir + ": " + strerror(errno));
    std::string err;
    Store store;
    if (!store.open(dir + "/db", err)) die(err);
    UniqueFd body(open((dir + "/body").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!body) die(dir + "/body: " + strerror(errno));

    const uint64_t now = uint64_t(time(nullptr));
    constexpr long long kBatch = 10000;
    std::vector<Op> ops;
    for (long long n = 0; n < count; n++) {
        uint64_t id;
        if (!store.allocate_id(id, err)) die(err);
        std::string rcpt = "user" + std::to_string(n) + "@" + domain;
        std::string text = body_text(uint64_t(n), rcpt, std::size_t(size));
        std::string qid = format_qid(id);
        UniqueFd f(openat(body.get(), qid.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
        if (!f || write(f.get(), text.data(), text.size()) != ssize_t(text.size()))
            die(dir + "/body/" + qid + ": " + strerror(errno));
        Op m;
        m.kind = Op::Kind::put_message;
        m.msgid = id;
        m.msg.arrival = now - 3600;
        m.msg.size = text.size();
        m.msg.nrcpt = 1;
        m.msg.sender = "backlog@fill.test";
        m.msg.client_addr = "127.0.0.1";
        m.msg.client_helo = "fill.test";
        ops.push_back(std::move(m));
        Op r;
        r.kind = Op::Kind::put_recipient;
        r.msgid = id;
        r.index = 0;
        r.rcpt.state = RcptState::deferred;
        r.rcpt.attempts = 1;
        r.rcpt.last_attempt = now - 60;
        long long next = (long long)now + after + n % spread;
        r.rcpt.next_attempt = uint64_t(next < 1 ? 1 : next);
        r.rcpt.addr = rcpt;
        r.rcpt.last_error = "451 4.4.1 put into the queue deferred by fill-queue";
        ops.push_back(std::move(r));
        if (ops.size() >= 2 * kBatch || n + 1 == count) {
            if (int rc = store.apply(ops)) die("store: " + Store::error_text(rc));
            ops.clear();
        }
    }
    if (syncfs(body.get()) != 0) die(std::string("syncfs: ") + strerror(errno));
    printf("fill-queue: %lld messages queued in %s\n", count, dir.c_str());
    return 0;
}
