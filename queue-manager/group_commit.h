// GroupCommit: new messages (from smtpd and maildrop pickup) and the store changes that delivery results
// ask for wait here for the next write, which they share: one syncfs(2) of the spool and one LMDB
// transaction, with the DSNs those results ask for. Owns what is pending and the flush timer; what
// happens after a commit (the 250, the active set, the maildrop file) belongs to whoever the hooks reach.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/event_ptr.h"
#include "queue-manager/store.h"

namespace mta::queue {

// A new message waiting for its commit: from smtpd (peer, reqid) or from maildrop pickup (maildrop).
struct CommitItem {
    uint64_t peer = 0, reqid = 0, msgid = 0;
    MessageRecord msg;
    std::vector<RecipientRecord> rcpts;
    std::string maildrop;  // file name in maildrop/ to remove once committed ("" for smtpd mail)
};

class GroupCommit {
public:
    static constexpr std::size_t kBatchCommits = 256;  // flush a group commit at once beyond this
    static constexpr std::size_t kBatchRecipients = 20000;
    static constexpr long kResultDelayUsec = 20000;    // results wait at most this for a commit
    static constexpr unsigned kResultRetries = 5;      // failed writes of the same results before they are dropped

    struct Hooks {
        // DSNs the result ops ask for: their store changes appended to `out`, their new ids returned.
        std::function<std::vector<uint64_t>(const std::vector<Op>& results, std::vector<Op>& out)> notify;
        // After the LMDB commit: the result ops as applied, the new messages, and whether DSNs were queued.
        std::function<void(const std::vector<Op>& results, std::vector<CommitItem>& commits, bool notified)> committed;
        // A new message that could not be committed (its body is gone already); space: ENOSPC or map full.
        std::function<void(const CommitItem& c, bool space)> refused;
        // A recipient whose result was given up on after kResultRetries failed writes: the store still has
        // it due, so it is delivered again later (at-least-once) rather than lost.
        std::function<void(uint64_t msgid, uint32_t index)> dropped;
    };

    GroupCommit(event_base* base, Store& store, int body_dir_fd, std::function<uint64_t()> now, Hooks hooks);
    GroupCommit(const GroupCommit&) = delete;  // its timer points at it
    GroupCommit& operator=(const GroupCommit&) = delete;
    // A new message: written at the end of this loop round, or at once when the batch is full.
    void add(CommitItem c);
    // A result's store change: written within kResultDelayUsec, with the next commit if one comes first.
    void add_result(Op op);
    void flush();
    bool idle() const { return commits_.empty() && results_.empty(); }

private:
    void arm(bool urgent);
    void failed(int rc, std::vector<CommitItem>& commits);

    Store& store_;
    int body_dir_fd_;
    std::function<uint64_t()> now_;
    Hooks hooks_;
    EventPtr flush_ev_;
    std::vector<CommitItem> commits_;
    std::size_t commit_rcpts_ = 0;
    std::vector<Op> results_;
    unsigned result_failures_ = 0;
    bool armed_ = false, urgent_ = false;
};

}  // namespace mta::queue
