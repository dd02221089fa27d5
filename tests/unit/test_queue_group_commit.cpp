// Unit tests for queue-manager/group_commit: new messages and result changes share one write, a full
// batch is written at once, DSN changes ride in the same transaction. Runs in a temp dir; no sleeps.
#include <doctest/doctest.h>

#include <cstdlib>
#include <event2/event.h>
#include <fcntl.h>
#include <filesystem>
#include <string>
#include <unistd.h>

#include "common/event_ptr.h"
#include "common/fd.h"
#include "queue-manager/group_commit.h"

using namespace mta;
using namespace mta::queue;
namespace fs = std::filesystem;

namespace {

struct Spool {
    std::string dir;
    Store store;
    UniqueFd body;
    EventBasePtr base{event_base_new()};
    std::vector<std::vector<uint64_t>> batches;  // msgids of each committed batch
    std::vector<std::size_t> results;            // result ops of each committed batch
    bool notified = false;
    std::vector<Op> dsn;  // what the notify hook adds

    Spool() {
        char tmpl[] = "/tmp/test-group-commit-XXXXXX";
        dir = mkdtemp(tmpl);
        fs::create_directory(dir + "/body");
        std::string err;
        REQUIRE(store.open(dir + "/db", err));
        body.reset(::open((dir + "/body").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        REQUIRE(body);
    }
    ~Spool() { fs::remove_all(dir); }

    GroupCommit make() {
        return GroupCommit(base.get(), store, body.get(), [] { return uint64_t(5000); },
                           GroupCommit::Hooks{
                               .notify = [this](const std::vector<Op>&, std::vector<Op>& out) {
                                   std::vector<uint64_t> ids;
                                   for (auto& op : dsn) {
                                       out.push_back(op);
                                       if (op.kind == Op::Kind::put_message) ids.push_back(op.msgid);
                                   }
                                   return ids;
                               },
                               .committed = [this](const std::vector<Op>& r, std::vector<CommitItem>& commits,
                                                   bool n) {
                                   std::vector<uint64_t> ids;
                                   for (auto& c : commits) ids.push_back(c.msgid);
                                   batches.push_back(ids);
                                   results.push_back(r.size());
                                   notified = n;
                               },
                               .refused = [](const CommitItem&, bool) { FAIL("refused"); },
                               .dropped = [](uint64_t, uint32_t) { FAIL("dropped"); },
                           });
    }
};

CommitItem item(uint64_t msgid, std::size_t nrcpt) {
    CommitItem c;
    c.msgid = msgid;
    c.msg.arrival = 4000;
    c.msg.sender = "s@example.org";
    c.msg.nrcpt = uint32_t(nrcpt);
    for (std::size_t i = 0; i < nrcpt; i++) {
        RecipientRecord r;
        r.addr = "r" + std::to_string(i) + "@example.net";
        c.rcpts.push_back(r);
    }
    return c;
}

Op change(Op::Kind kind, uint64_t msgid) {
    Op op;
    op.kind = kind;
    op.msgid = msgid;
    return op;
}

}  // namespace

TEST_CASE("new messages wait for the flush and share one write, due at once") {
    Spool s;
    GroupCommit g = s.make();
    g.add(item(1, 2));
    g.add(item(2, 1));
    CHECK_FALSE(g.idle());
    CHECK(s.batches.empty());
    CHECK(s.store.count("messages") == 0);
    g.flush();
    CHECK(g.idle());
    REQUIRE(s.batches.size() == 1);
    CHECK(s.batches[0] == std::vector<uint64_t>{1, 2});
    CHECK(s.store.count("messages") == 2);
    CHECK(s.store.count("recipients") == 3);
    ScanResult due = s.store.scan_due(5000, 100, [](uint64_t, uint32_t) { return false; });
    CHECK(due.entries == 3);
    g.flush();  // nothing pending: no empty batch
    CHECK(s.batches.size() == 1);
}

TEST_CASE("a full batch is written at once") {
    Spool s;
    GroupCommit g = s.make();
    for (uint64_t id = 1; id < GroupCommit::kBatchCommits; id++) g.add(item(id, 1));
    CHECK(s.batches.empty());
    g.add(item(GroupCommit::kBatchCommits, 1));
    REQUIRE(s.batches.size() == 1);
    CHECK(s.batches[0].size() == GroupCommit::kBatchCommits);
    CHECK(g.idle());
}

TEST_CASE("result changes and the DSNs they ask for commit with the next batch") {
    Spool s;
    GroupCommit g = s.make();
    g.add(item(1, 2));
    g.flush();
    Op done = change(Op::Kind::delete_recipient, 1);
    done.had_schedule = true;
    done.old_next = 5000;
    g.add_result(done);
    s.dsn.push_back(change(Op::Kind::put_message, 9));
    CHECK_FALSE(g.idle());
    g.add(item(2, 1));
    g.flush();
    REQUIRE(s.batches.size() == 2);
    CHECK(s.batches[1] == std::vector<uint64_t>{2});
    CHECK(s.results[1] == 1);  // the result op only: the DSN's change is the group commit's own
    CHECK(s.notified);
    CHECK(s.store.count("messages") == 3);
    CHECK(s.store.count("recipients") == 2);
}

TEST_CASE("a message committed with a hold reason is stored held, with no schedule entry") {
    Spool s;
    GroupCommit g = s.make();
    CommitItem held = item(1, 2);
    held.msg.hold_reason = "DMARC policy quarantine for example.org";
    g.add(std::move(held));
    g.add(item(2, 1));
    g.flush();
    CHECK(s.store.count("recipients") == 3);
    ScanResult due = s.store.scan_due(5000, 100, [](uint64_t, uint32_t) { return false; });
    CHECK(due.entries == 1);  // message 2 only
    int loaded = 0;
    s.store.load_messages({1}, [&](uint64_t, Store::Load l, MessageRecord& m, RcptList& rcpts) {
        REQUIRE(l == Store::Load::ok);
        CHECK(m.hold_reason == "DMARC policy quarantine for example.org");
        REQUIRE(rcpts.size() == 2);
        for (auto& r : rcpts) CHECK(r.second.state == RcptState::held);
        loaded++;
    });
    CHECK(loaded == 1);
}
