// Unit tests for queue-manager/store and recovery: batched commits, durability across reopen, id
// high-water, schedule scans, corrupt/orphan handling. Runs in a temp dir; no network, no sleeps.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <string>
#include <sys/stat.h>
#include <lmdb.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "queue-manager/qid.h"
#include "queue-manager/recovery.h"
#include "queue-manager/store.h"

using namespace mta::queue;
namespace fs = std::filesystem;

namespace {

struct TempSpool {
    std::string dir;
    TempSpool() {
        char tmpl[] = "/tmp/test-queue-XXXXXX";
        dir = mkdtemp(tmpl);
        fs::create_directory(dir + "/body");
    }
    ~TempSpool() { fs::remove_all(dir); }
    std::string db() const { return dir + "/db"; }
    std::string body() const { return dir + "/body"; }
    void write_body(uint64_t id) const {
        int fd = ::open((body() + "/" + format_qid(id)).c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        REQUIRE(fd >= 0);
        REQUIRE(::write(fd, "Subject: x\r\n\r\nhi\r\n", kBodySize) == kBodySize);
        ::close(fd);
    }
    static constexpr ssize_t kBodySize = 18;  // what write_body writes and add_message records
    bool has_body(uint64_t id) const { return fs::exists(body() + "/" + format_qid(id)); }
};

void add_message(std::vector<Op>& ops, uint64_t id, int nrcpt, uint64_t when) {
    Op m;
    m.kind = Op::Kind::put_message;
    m.msgid = id;
    m.msg.arrival = when;
    m.msg.size = TempSpool::kBodySize;
    m.msg.sender = "s@example.org";
    m.msg.nrcpt = uint32_t(nrcpt);
    ops.push_back(m);
    for (int i = 0; i < nrcpt; i++) {
        Op r;
        r.kind = Op::Kind::put_recipient;
        r.msgid = id;
        r.index = uint32_t(i);
        r.rcpt.addr = "r" + std::to_string(i) + "@example.net";
        r.rcpt.next_attempt = when;
        ops.push_back(r);
    }
}

ScanResult scan(Store& s, uint64_t now) {
    return s.scan_due(now, 1000, [](uint64_t, uint32_t) { return false; });
}

}  // namespace

TEST_CASE("an empty or garbage data.mdb is refused, never turned into an empty queue") {
    TempSpool t;
    std::string err;
    fs::create_directory(t.db());
    { std::ofstream f(t.db() + "/data.mdb"); }
    Store s;
    CHECK_FALSE(s.open(t.db(), err));
    CHECK(err.find("data.mdb is empty") != std::string::npos);
    CHECK(fs::file_size(t.db() + "/data.mdb") == 0);  // left alone for the admin
    { std::ofstream f(t.db() + "/data.mdb"); f << std::string(20000, 'x'); }
    Store s2;
    CHECK_FALSE(s2.open(t.db(), err));
    CHECK(err.find("data.mdb") != std::string::npos);
}

TEST_CASE("ids are never reused across reopen") {
    TempSpool t;
    uint64_t last = 0;
    {
        Store s;
        std::string err;
        REQUIRE(s.open(t.db(), err));
        for (int i = 0; i < 10; i++) {
            uint64_t id;
            REQUIRE(s.allocate_id(id, err));
            CHECK(id > last);
            last = id;
        }
    }
    Store s;
    std::string err;
    REQUIRE(s.open(t.db(), err));
    uint64_t id;
    REQUIRE(s.allocate_id(id, err));
    CHECK(id > last);
    CHECK(id >= Store::kIdBlock);  // the whole reserved block is skipped
}

TEST_CASE("a committed batch survives reopen and is scheduled in time order") {
    TempSpool t;
    std::string err;
    {
        Store s;
        REQUIRE(s.open(t.db(), err));
        std::vector<Op> ops;
        add_message(ops, 5, 2, 200);
        add_message(ops, 6, 1, 100);
        REQUIRE(s.apply(ops) == 0);
    }
    Store s;
    REQUIRE(s.open(t.db(), err));
    CHECK(s.count("messages") == 2);
    CHECK(s.count("recipients") == 3);
    CHECK(s.count("schedule") == 3);
    ScanResult r = s.scan_due(150, 1000, [](uint64_t, uint32_t) { return false; });
    REQUIRE(r.msgids.size() == 1);
    CHECK(r.msgids[0] == 6);
    CHECK(r.next_time == 200);
    r = scan(s, 300);
    REQUIRE(r.msgids.size() == 2);
    CHECK(r.msgids[0] == 6);
    CHECK(r.msgids[1] == 5);
    CHECK(r.entries == 3);
    r = s.scan_due(300, 1000, [](uint64_t id, uint32_t) { return id == 6; });
    CHECK(r.msgids == std::vector<uint64_t>{5});
    r = s.scan_due(300, 1, [](uint64_t, uint32_t) { return false; });
    CHECK(r.more);

    int loaded = 0;
    s.load_messages({5, 99}, [&](uint64_t id, Store::Load l, MessageRecord& m, RcptList& rc) {
        if (id == 5) {
            CHECK(l == Store::Load::ok);
            CHECK(m.sender == "s@example.org");
            REQUIRE(rc.size() == 2);
            CHECK(rc[1].first == 1);
            CHECK(rc[1].second.addr == "r1@example.net");
        } else {
            CHECK(l == Store::Load::missing);
        }
        loaded++;
    });
    CHECK(loaded == 2);
}

TEST_CASE("deferral moves the schedule entry; delivery deletes records") {
    TempSpool t;
    std::string err;
    Store s;
    REQUIRE(s.open(t.db(), err));
    std::vector<Op> ops;
    add_message(ops, 7, 2, 100);
    REQUIRE(s.apply(ops) == 0);
    Op d;
    d.kind = Op::Kind::put_recipient;
    d.msgid = 7;
    d.index = 0;
    d.had_schedule = true;
    d.old_next = 100;
    d.rcpt.addr = "r0@example.net";
    d.rcpt.state = RcptState::deferred;
    d.rcpt.next_attempt = 500;
    Op g;
    g.kind = Op::Kind::delete_recipient;
    g.msgid = 7;
    g.index = 1;
    g.had_schedule = true;
    g.old_next = 100;
    REQUIRE(s.apply({d, g}) == 0);
    CHECK(s.count("recipients") == 1);
    CHECK(s.count("schedule") == 1);
    CHECK(scan(s, 400).msgids.empty());
    CHECK(scan(s, 400).next_time == 500);
    CHECK(scan(s, 500).msgids.size() == 1);
    // Bounced: record kept, no schedule entry.
    d.old_next = 500;
    d.rcpt.state = RcptState::bounced;
    REQUIRE(s.apply({d}) == 0);
    CHECK(s.count("recipients") == 1);
    CHECK(s.count("schedule") == 0);
}

TEST_CASE("the suppression list is kept across reopen and changed in batches") {
    TempSpool t;
    std::string err;
    {
        Store s;
        REQUIRE(s.open(t.db(), err));
        Op a;
        a.kind = Op::Kind::put_suppression;
        a.address = "bob@example.net";
        a.sup = SuppressionRecord{1, 100, 200, 7, "550 5.1.1 no such user"};
        Op b = a;
        b.address = "carol@example.net";
        b.sup.msgid = 0;
        REQUIRE(s.apply({a, b}) == 0);
        CHECK(s.count("suppression") == 2);
    }
    Store s;
    REQUIRE(s.open(t.db(), err));
    SuppressionRecord got;
    REQUIRE(s.find_suppression("bob@example.net", got));
    CHECK(got == SuppressionRecord{1, 100, 200, 7, "550 5.1.1 no such user"});
    CHECK_FALSE(s.find_suppression("Bob@example.net", got));  // keys are lower-cased by the callers
    CHECK_FALSE(s.find_suppression("nobody@example.net", got));
    Op d;
    d.kind = Op::Kind::delete_suppression;
    d.address = "bob@example.net";
    Op gone = d;
    gone.address = "never-there@example.net";  // deleting what is not there is fine
    REQUIRE(s.apply({d, gone}) == 0);
    std::vector<std::string> left;
    s.for_each_suppression([&](const std::string& a, const SuppressionRecord&) { left.push_back(a); });
    CHECK(left == std::vector<std::string>{"carol@example.net"});
}

TEST_CASE("the map grows instead of failing when full") {
    TempSpool t;
    std::string err;
    Store s;
    REQUIRE(s.open(t.db(), err, 64 * 1024));
    std::size_t before = s.map_size();
    std::vector<Op> ops;
    for (uint64_t id = 1; id <= 400; id++) add_message(ops, id, 3, 100);
    REQUIRE(s.apply(ops) == 0);
    CHECK(s.map_size() > before);
    CHECK(s.count("recipients") == 1200);
}

TEST_CASE("recovery: orphan bodies removed, missing body quarantined, schedule repaired") {
    TempSpool t;
    std::string err;
    uint64_t stray = 0;
    {
        Store s;
        REQUIRE(s.open(t.db(), err));
        std::vector<Op> ops;
        add_message(ops, 10, 2, 100);  // body present
        add_message(ops, 11, 1, 100);  // body missing -> corrupt
        add_message(ops, 12, 1, 100);  // all recipients gone -> finished
        REQUIRE(s.apply(ops) == 0);
        Op g;
        g.kind = Op::Kind::delete_recipient;
        g.msgid = 12;
        g.had_schedule = false;  // leave a stale schedule entry behind on purpose
        REQUIRE(s.apply({g}) == 0);
        REQUIRE(s.allocate_id(stray, err));  // its body is written, the commit never comes
    }
    t.write_body(10);
    t.write_body(12);
    t.write_body(stray);
    Store s;
    REQUIRE(s.open(t.db(), err));
    REQUIRE(s.first_id_this_run() > stray);
    uint64_t fresh;
    REQUIRE(s.allocate_id(fresh, err));
    t.write_body(fresh);  // this run's, not committed yet: recovery leaves it alone
    RecoveryReport rep;
    REQUIRE(s.recover(t.body(), rep, err));
    CHECK(rep.corrupt == 1);
    CHECK(rep.finished == 1);
    CHECK(rep.orphan_bodies == 2);
    CHECK(rep.schedule_dropped == 1);  // message 12's
    CHECK(t.has_body(10));
    CHECK_FALSE(t.has_body(12));
    CHECK_FALSE(t.has_body(stray));
    CHECK(t.has_body(fresh));
    CHECK(s.count("messages") == 2);   // 10 and corrupt 11
    CHECK(s.count("schedule") == 2);   // only message 10's recipients
    CHECK(scan(s, 1000).msgids == std::vector<uint64_t>{10});
    s.load_messages({11}, [](uint64_t, Store::Load l, MessageRecord&, RcptList&) { CHECK(l == Store::Load::corrupt); });
}

// Removes one key from a db of the store behind its back (damage recovery must repair).
void raw_delete(const std::string& db_dir, const char* db, std::string_view key) {
    MDB_env* e;
    REQUIRE(mdb_env_create(&e) == 0);
    mdb_env_set_maxdbs(e, 8);
    REQUIRE(mdb_env_open(e, db_dir.c_str(), 0, 0600) == 0);
    MDB_txn* txn;
    REQUIRE(mdb_txn_begin(e, nullptr, 0, &txn) == 0);
    MDB_dbi d;
    REQUIRE(mdb_dbi_open(txn, db, 0, &d) == 0);
    MDB_val k = to_val(key);
    REQUIRE(mdb_del(txn, d, &k, nullptr) == 0);
    REQUIRE(mdb_txn_commit(txn) == 0);
    mdb_env_close(e);
}

TEST_CASE("recovery in slices: a lost schedule entry comes back, orphans go, busy messages are left alone") {
    TempSpool t;
    std::string err;
    {
        Store s;
        REQUIRE(s.open(t.db(), err));
        std::vector<Op> ops;
        for (uint64_t id = 1; id <= 40; id++) add_message(ops, id, 2, 100);
        REQUIRE(s.apply(ops) == 0);
        Op gone;  // message 7's record goes, its recipients stay: orphans
        gone.kind = Op::Kind::delete_message;
        gone.msgid = 7;
        REQUIRE(s.apply({gone}) == 0);
    }
    raw_delete(t.db(), "schedule", schedule_key(100, 5, 1).view());   // a scheduled recipient without its entry
    raw_delete(t.db(), "schedule", schedule_key(100, 9, 0).view());   // ... of a busy message
    for (uint64_t id = 1; id <= 40; id++)
        if (id != 7 && id != 20) t.write_body(id);                    // 20: body missing, but busy
    Store s;
    REQUIRE(s.open(t.db(), err));
    Recovery r(s, t.body(), [](uint64_t id) { return id == 9 || id == 20; });
    int steps = 0;
    while (!r.done()) {
        REQUIRE(r.step(3, err));
        steps++;
    }
    CHECK(steps > 40);  // three records a slice
    const RecoveryReport& rep = r.report();
    CHECK(rep.messages == 39);
    CHECK(rep.schedule_added == 1);
    CHECK(rep.orphan_recipients == 2);
    CHECK(rep.corrupt == 0);  // 20 is busy: the active set's own body check covers it
    CHECK(rep.schedule_dropped == 2);  // message 7's two entries
    CHECK(s.count("recipients") == 78);
    CHECK(s.count("schedule") == 77);  // 80 less two lost, 5/1 back, 9/0 still missing (busy), 7's two gone
    ScanResult due = scan(s, 1000);
    CHECK(std::find(due.msgids.begin(), due.msgids.end(), 5) != due.msgids.end());
    CHECK(std::find(due.msgids.begin(), due.msgids.end(), 7) == due.msgids.end());
}

TEST_CASE("for_each_message_from walks in slices and says where to go on") {
    TempSpool t;
    std::string err;
    Store s;
    REQUIRE(s.open(t.db(), err));
    std::vector<Op> ops;
    for (uint64_t id = 1; id <= 10; id++) add_message(ops, id, 1, 100);
    REQUIRE(s.apply(ops) == 0);
    std::vector<uint64_t> seen;
    uint64_t from = 0;
    int slices = 0;
    do {
        from = s.for_each_message_from(from, 4, [&](uint64_t id, MessageRecord&, RcptList& rcpts) {
            seen.push_back(id);
            CHECK(rcpts.size() == 1);
        });
        slices++;
    } while (from != 0);
    CHECK(slices == 3);
    CHECK(seen == std::vector<uint64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
    CHECK(s.for_each_message_from(11, 4, [](uint64_t, MessageRecord&, RcptList&) { FAIL("past the end"); }) == 0);
}

TEST_CASE("recovery: a body that is not the committed plain file makes its message corrupt") {
    TempSpool t;
    std::string err;
    {
        Store s;
        REQUIRE(s.open(t.db(), err));
        std::vector<Op> ops;
        for (uint64_t id = 30; id <= 35; id++) add_message(ops, id, 1, 100);
        REQUIRE(s.apply(ops) == 0);
    }
    for (uint64_t id = 30; id <= 35; id++) t.write_body(id);
    auto path = [&](uint64_t id) { return t.body() + "/" + format_qid(id); };
    REQUIRE(::truncate(path(31).c_str(), 5) == 0);               // truncated
    REQUIRE(::truncate(path(32).c_str(), 100) == 0);             // grown
    fs::remove(path(33));
    fs::create_directory(path(33));                              // a directory
    fs::remove(path(34));
    REQUIRE(::mkfifo(path(34).c_str(), 0600) == 0);              // a FIFO: must not block recovery
    fs::remove(path(35));
    fs::create_symlink(path(30), path(35));                      // a symlink, even to a good body
    Store s;
    REQUIRE(s.open(t.db(), err));
    RecoveryReport rep;
    REQUIRE(s.recover(t.body(), rep, err));
    CHECK(rep.corrupt == 5);
    CHECK(scan(s, 1000).msgids == std::vector<uint64_t>{30});
    for (uint64_t id = 31; id <= 35; id++)
        s.load_messages({id}, [](uint64_t, Store::Load l, MessageRecord&, RcptList&) { CHECK(l == Store::Load::corrupt); });
}

TEST_CASE("body_fd_problem compares type and size with the record") {
    TempSpool t;
    t.write_body(40);
    int fd = ::open((t.body() + "/" + format_qid(40)).c_str(), O_RDONLY);
    REQUIRE(fd >= 0);
    CHECK(body_fd_problem(fd, TempSpool::kBodySize).empty());
    CHECK(body_fd_problem(fd, TempSpool::kBodySize + 1).find("differs from the recorded 19") != std::string::npos);
    ::close(fd);
    fd = ::open(t.body().c_str(), O_RDONLY | O_DIRECTORY);
    REQUIRE(fd >= 0);
    CHECK(body_fd_problem(fd, 0) == "body is not a plain file");
    ::close(fd);
}

TEST_CASE("recovery quarantines undecodable records and never crashes") {
    TempSpool t;
    std::string err;
    {
        Store s;
        REQUIRE(s.open(t.db(), err));
        std::vector<Op> ops;
        add_message(ops, 20, 2, 100);
        REQUIRE(s.apply(ops) == 0);
    }
    {  // damage one recipient and plant a garbage message record behind the store's back
        MDB_env* e;
        REQUIRE(mdb_env_create(&e) == 0);
        mdb_env_set_maxdbs(e, 8);
        REQUIRE(mdb_env_open(e, t.db().c_str(), 0, 0600) == 0);
        MDB_txn* txn;
        REQUIRE(mdb_txn_begin(e, nullptr, 0, &txn) == 0);
        MDB_dbi rd, md;
        REQUIRE(mdb_dbi_open(txn, "recipients", 0, &rd) == 0);
        REQUIRE(mdb_dbi_open(txn, "messages", 0, &md) == 0);
        Key rk = recipient_key(20, 1), mk = message_key(21);
        MDB_val k = to_val(rk.view()), v = to_val("\x01garbage");
        REQUIRE(mdb_put(txn, rd, &k, &v, 0) == 0);
        k = to_val(mk.view());
        REQUIRE(mdb_put(txn, md, &k, &v, 0) == 0);
        REQUIRE(mdb_txn_commit(txn) == 0);
        mdb_env_close(e);
    }
    t.write_body(20);
    Store s;
    REQUIRE(s.open(t.db(), err));
    RecoveryReport rep;
    REQUIRE(s.recover(t.body(), rep, err));
    CHECK(rep.quarantined == 2);
    CHECK(s.count("corrupt") == 2);
    CHECK(s.count("messages") == 1);
    CHECK(s.count("recipients") == 1);
    CHECK(s.count("schedule") == 1);
}

TEST_CASE("mark_corrupt takes a message out of the schedule") {
    TempSpool t;
    std::string err;
    Store s;
    REQUIRE(s.open(t.db(), err));
    std::vector<Op> ops;
    add_message(ops, 30, 3, 100);
    REQUIRE(s.apply(ops) == 0);
    Op c;
    c.kind = Op::Kind::mark_corrupt;
    c.msgid = 30;
    REQUIRE(s.apply({c}) == 0);
    CHECK(s.count("schedule") == 0);
    CHECK(s.count("recipients") == 3);
    s.load_messages({30}, [](uint64_t, Store::Load l, MessageRecord&, RcptList&) { CHECK(l == Store::Load::corrupt); });
}

// LMDB resets its reader table when the first process opens the environment, so a dead reader's slot
// lingers only while another process keeps it open (an mtaqueue tool, a second opener): `holder` is that.
TEST_CASE("a reader slot left by a killed process is freed at open") {
    TempSpool sp;
    {
        Store s;
        std::string err;
        REQUIRE_MESSAGE(s.open(sp.db(), err), err);
    }
    auto open_env = [&](bool read_txn) {
        MDB_env* e = nullptr;
        MDB_txn* t = nullptr;
        if (mdb_env_create(&e) || mdb_env_set_maxdbs(e, 8) || mdb_env_open(e, sp.db().c_str(), 0, 0600) ||
            (read_txn && mdb_txn_begin(e, nullptr, MDB_RDONLY, &t)))
            _exit(1);
    };
    int ready[2];
    REQUIRE(pipe(ready) == 0);
    pid_t holder = fork();
    REQUIRE(holder >= 0);
    if (holder == 0) {  // keeps the environment open, no transaction
        open_env(false);
        (void)!write(ready[1], "x", 1);
        pause();
        _exit(0);
    }
    char c;
    REQUIRE(read(ready[0], &c, 1) == 1);
    pid_t reader = fork();
    REQUIRE(reader >= 0);
    if (reader == 0) {  // holds a read transaction and dies without ending it
        open_env(true);
        raise(SIGKILL);
    }
    int status = 0;
    REQUIRE(waitpid(reader, &status, 0) == reader);
    REQUIRE(WIFSIGNALED(status));
    Store s;
    std::string err;
    bool opened = s.open(sp.db(), err);
    kill(holder, SIGKILL);
    waitpid(holder, &status, 0);
    close(ready[0]);
    close(ready[1]);
    REQUIRE_MESSAGE(opened, err);
    CHECK(s.stale_readers_cleared() == 1);
}
