// Group commit: commits and delivery results that arrive in one event-loop round share one syncfs(2)
// of the spool filesystem and one LMDB write transaction; only then is commit_ok sent. Commit point
// order: body written by smtpd -> syncfs here (every body of the batch, its data and its directory
// entry are on disk; Linux >= 5.8 reports writeback errors of any of them) -> LMDB commit ->
// commit_ok -> smtpd says 250. One syncfs replaces an fsync per body in the smtpd processes plus
// an fsync of body/, so the journal commits once per batch instead of once per message.
#include "queue-manager/group_commit.h"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <event2/event.h>
#include <unistd.h>

#include "common/fault.h"
#include "common/log.h"
#include "common/metrics.h"
#include "queue-manager/qid.h"

namespace mta::queue {

GroupCommit::GroupCommit(event_base* base, Store& store, int body_dir_fd, std::function<uint64_t()> now, Hooks hooks)
    : store_(store), body_dir_fd_(body_dir_fd), now_(std::move(now)), hooks_(std::move(hooks)) {
    flush_ev_.reset(evtimer_new(base, [](evutil_socket_t, short, void* a) { static_cast<GroupCommit*>(a)->flush(); }, this));
}

void GroupCommit::add(CommitItem c) {
    commit_rcpts_ += c.rcpts.size();
    commits_.push_back(std::move(c));
    if (commits_.size() >= kBatchCommits || commit_rcpts_ >= kBatchRecipients) flush();
    else arm(true);
}

void GroupCommit::add_result(Op op) {
    results_.push_back(std::move(op));
    arm(false);
}

// Commits flush at the end of this loop round (smtpd's client waits for them). Results alone may wait a
// few milliseconds to share the next commit's transaction: losing them costs a re-delivery, never mail.
void GroupCommit::arm(bool urgent) {
    if (armed_ && (urgent_ || !urgent)) return;
    armed_ = true;
    urgent_ = urgent;
    struct timeval tv = {0, urgent ? 0 : kResultDelayUsec};
    evtimer_add(flush_ev_.get(), &tv);
}

void GroupCommit::flush() {
    armed_ = false;
    urgent_ = false;
    event_del(flush_ev_.get());
    if (idle()) return;
    std::vector<CommitItem> commits;
    commits.swap(commits_);
    commit_rcpts_ = 0;
    if (!commits.empty() && syncfs(body_dir_fd_) != 0) {
        int e = errno;
        LOG_ERROR("event=spool_fsync_failed reason=\"%s\"", strerror(e));
        failed(e, commits);
        commits.clear();
        if (results_.empty()) return;
    }
    if (!commits.empty()) MTA_CRASH_POINT("queue.commit.after_sync");  // bodies durable, no record yet
    uint64_t now = now_();
    std::size_t nresults = results_.size();
    std::vector<Op> ops = std::move(results_);
    results_.clear();
    std::vector<Op> notes;
    std::vector<uint64_t> dsn_ids = hooks_.notify(ops, notes);
    for (auto& n : notes) ops.push_back(std::move(n));
    for (auto& c : commits) {
        Op m;
        m.kind = Op::Kind::put_message;
        m.msgid = c.msgid;
        m.msg = c.msg;
        ops.push_back(std::move(m));
        for (std::size_t i = 0; i < c.rcpts.size(); i++) {
            c.rcpts[i].next_attempt = now;
            // Queued held on arrival (mta-msgauth's quarantine, for smtpd and pickup mail alike): stored
            // held, so it has no schedule entry until mtaqueue release.
            if (!c.msg.hold_reason.empty()) c.rcpts[i].state = RcptState::held;
            Op r;
            r.kind = Op::Kind::put_recipient;
            r.msgid = c.msgid;
            r.index = uint32_t(i);
            r.rcpt = c.rcpts[i];
            ops.push_back(std::move(r));
        }
    }
    auto t0 = std::chrono::steady_clock::now();
    int rc = store_.apply(ops);
    LOG_DEBUG("event=flush commits=%zu results=%zu ops=%zu rc=%d usec=%lld", commits.size(), nresults, ops.size(), rc,
              (long long)std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count());
    ops.resize(nresults);
    if (rc != 0) {
        // The DSNs are made again from the kept result ops on the retry.
        for (uint64_t id : dsn_ids) unlinkat(body_dir_fd_, format_qid(id).c_str(), 0);
        results_ = std::move(ops);
        failed(rc, commits);
        return;
    }
    if (!commits.empty()) MTA_CRASH_POINT("queue.commit.before_ok");  // committed, smtpd not told
    result_failures_ = 0;
    auto& reg = metrics::registry();
    if (!commits.empty()) reg.observe("mta_queue_commit_batch_size", "", double(commits.size()));
    for (auto& c : commits)
        reg.add("mta_messages_received_total", metrics::labels({{"origin", c.maildrop.empty() ? "smtp" : "sendmail"}}));
    if (!dsn_ids.empty()) reg.add("mta_messages_received_total", metrics::labels({{"origin", "bounce"}}), dsn_ids.size());
    hooks_.committed(ops, commits, !dsn_ids.empty());
}

void GroupCommit::failed(int rc, std::vector<CommitItem>& commits) {
    bool space = Store::is_space_error(rc);
    LOG_ERROR("event=queue_write_failed reason=\"%s\" commits=%zu results=%zu",
              log::safe(Store::error_text(rc)).c_str(), commits.size(), results_.size());
    for (auto& c : commits) {
        unlinkat(body_dir_fd_, format_qid(c.msgid).c_str(), 0);
        hooks_.refused(c, space);
    }
    if (results_.empty()) return;
    if (++result_failures_ > kResultRetries) {
        LOG_ERROR("event=results_dropped count=%zu", results_.size());
        std::vector<Op> ops;
        ops.swap(results_);
        result_failures_ = 0;
        for (auto& op : ops) {
            if (op.kind == Op::Kind::put_recipient || op.kind == Op::Kind::delete_recipient)
                hooks_.dropped(op.msgid, op.index);
        }
        return;
    }
    armed_ = true;  // a new commit (urgent) may still bring the retry forward
    urgent_ = false;
    struct timeval tv = {5, 0};
    evtimer_add(flush_ev_.get(), &tv);
}

}  // namespace mta::queue
