// Group commit: commits and delivery results that arrive in one event-loop round share one syncfs(2)
// of the spool filesystem and one LMDB write transaction; only then is commit_ok sent. Commit point
// order: body written by smtpd -> syncfs here (every body of the batch, its data and its directory
// entry are on disk; Linux >= 5.8 reports writeback errors of any of them) -> LMDB commit ->
// commit_ok -> smtpd says 250. One syncfs replaces an fsync per body in the smtpd processes plus
// an fsync of body/, so the journal commits once per batch instead of once per message.
#include <cerrno>
#include <chrono>
#include <cstring>
#include <event2/event.h>
#include <unistd.h>

#include "common/log.h"
#include "common/wire/wire.h"
#include "queue-manager/qid.h"
#include "queue-manager/server.h"

namespace mta::queue {

// Commits flush at the end of this loop round (smtpd's client waits for them). Results alone may wait a
// few milliseconds to share the next commit's transaction: losing them costs a re-delivery, never mail.
void QueueServer::arm_flush(bool urgent) {
    if (flush_armed_ && (flush_urgent_ || !urgent)) return;
    flush_armed_ = true;
    flush_urgent_ = urgent;
    struct timeval tv = {0, urgent ? 0 : kResultDelayUsec};
    evtimer_add(flush_ev_.get(), &tv);
}

void QueueServer::flush() {
    flush_armed_ = false;
    flush_urgent_ = false;
    event_del(flush_ev_.get());
    if (commits_.empty() && result_ops_.empty()) return;
    std::vector<CommitItem> commits;
    commits.swap(commits_);
    commit_rcpts_ = 0;
    if (!commits.empty() && syncfs(body_dir_fd_.get()) != 0) {
        int e = errno;
        LOG_ERROR("event=spool_fsync_failed reason=\"%s\"", strerror(e));
        flush_failed(e, commits);
        commits.clear();
        if (result_ops_.empty()) return;
    }
    uint64_t now = clock_.now();
    std::size_t nresults = result_ops_.size();
    std::vector<Op> ops = std::move(result_ops_);
    result_ops_.clear();
    std::vector<Op> notes;
    std::vector<uint64_t> dsn_ids = make_notifications(ops, notes);
    for (auto& n : notes) ops.push_back(std::move(n));
    for (auto& c : commits) {
        Op m;
        m.kind = Op::Kind::put_message;
        m.msgid = c.msgid;
        m.msg = c.msg;
        ops.push_back(std::move(m));
        for (std::size_t i = 0; i < c.rcpts.size(); i++) {
            c.rcpts[i].next_attempt = now;
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
        for (uint64_t id : dsn_ids) unlinkat(body_dir_fd_.get(), format_qid(id).c_str(), 0);
        result_ops_ = std::move(ops);
        flush_failed(rc, commits);
        return;
    }
    if (!dsn_ids.empty()) wake_at(now);
    result_failures_ = 0;
    after_results(ops);
    after_commits(commits);
    maybe_finish_stop();
}

void QueueServer::flush_failed(int rc, std::vector<CommitItem>& commits) {
    bool space = Store::is_space_error(rc);
    LOG_ERROR("event=queue_write_failed reason=\"%s\" commits=%zu results=%zu",
              log::safe(Store::error_text(rc)).c_str(), commits.size(), result_ops_.size());
    for (auto& c : commits) {
        unlinkat(body_dir_fd_.get(), format_qid(c.msgid).c_str(), 0);
        maildrop_busy_.erase(c.maildrop);  // the file stays and is picked up again later
        if (Peer* p = find_peer(c.peer); p && !p->closed) {
            if (space) reply_fail(*p, c.reqid, 452, "4.3.1", "Insufficient system storage");
            else reply_fail(*p, c.reqid, 451, "4.3.0", "Local error in processing: queue write failed");
        }
    }
    if (result_ops_.empty()) return;
    if (++result_failures_ > 5) {
        // Give up on these results: the store still has the recipients due, so they are delivered
        // again later (at-least-once) rather than lost.
        LOG_ERROR("event=results_dropped count=%zu", result_ops_.size());
        std::vector<Op> ops;
        ops.swap(result_ops_);
        result_failures_ = 0;
        for (auto& op : ops) {
            if (op.kind == Op::Kind::put_recipient || op.kind == Op::Kind::delete_recipient)
                release_rcpt(op.msgid, op.index);
        }
        return;
    }
    flush_armed_ = true;  // a new commit (urgent) may still bring the retry forward
    flush_urgent_ = false;
    struct timeval tv = {5, 0};
    evtimer_add(flush_ev_.get(), &tv);
}

void QueueServer::after_results(const std::vector<Op>& ops) {
    for (auto& op : ops) {
        switch (op.kind) {
        case Op::Kind::put_recipient:
            if (op.rcpt.scheduled()) wake_at(op.rcpt.next_attempt);
            release_rcpt(op.msgid, op.index);
            break;
        case Op::Kind::delete_recipient:
            release_rcpt(op.msgid, op.index);
            break;
        case Op::Kind::delete_message:
            pool_->remove(op.msgid);
            LOG_INFO("event=removed qid=%s", format_qid(op.msgid).c_str());
            break;
        default:
            break;
        }
    }
}

void QueueServer::after_commits(std::vector<CommitItem>& commits) {
    for (auto& c : commits) {
        std::string qid = format_qid(c.msgid);
        LOG_INFO("event=queued qid=%s from=<%s> nrcpt=%zu size=%llu", qid.c_str(), log::safe(c.msg.sender).c_str(),
                 c.rcpts.size(), (unsigned long long)c.msg.size);
        if (!c.maildrop.empty()) {
            if (unlinkat(maildrop_fd_.get(), c.maildrop.c_str(), 0) != 0)
                LOG_ERROR("event=maildrop_unlink_failed qid=%s file=%s reason=\"%s\"", qid.c_str(),
                          log::safe(c.maildrop).c_str(), strerror(errno));
            maildrop_busy_.erase(c.maildrop);
        }
        if (Peer* p = find_peer(c.peer); p && !p->closed) {
            p->link->send(wire::encode(wire::CommitOk{c.msgid}, c.reqid));
        }
    }
    // Hand the new recipients straight to delivery, unless the active set is full (then the
    // schedule scan picks them up later).
    for (auto& c : commits) {
        if (stopping_ || active_rcpts_ + c.rcpts.size() > kActiveLimit) {
            backlog_ = true;
            continue;
        }
        ActiveMessage& am = active_[c.msgid];
        am.msg = std::move(c.msg);
        am.records_left = uint32_t(c.rcpts.size());
        std::vector<uint32_t> indices;
        indices.reserve(c.rcpts.size());
        for (std::size_t i = 0; i < c.rcpts.size(); i++) {
            am.rcpts.emplace(uint32_t(i), ActiveRcpt{std::move(c.rcpts[i]), RcptStage::ready});
            indices.push_back(uint32_t(i));
        }
        active_rcpts_ += indices.size();
        activate(c.msgid, am, indices);
    }
}

}  // namespace mta::queue
