// mta-smtpd's side of mta-msgauth (DESIGN §10): the message is held in a memfd while it is read; at its
// end the sealed memfd and the envelope facts go to mta-msgauth, and the session waits (reading
// nothing, never blocking the loop) for the verdict. Accepted: its header fields, then the message
// without the cut ranges (forged Authentication-Results), go into the queue's body file and the commit
// proceeds. Refused: the client gets its code. No verdict in msgauth_timeout, or no mta-msgauth at all:
// msgauth_default_action. The reply is validated by wire::decode and the cuts against the message.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <event2/event.h>

#include "common/file_util.h"
#include "common/log.h"
#include "common/wire/wire.h"
#include "smtpd/smtpd_server.h"
#include "smtpd/smtpd_session.h"

namespace mta::smtpd {
namespace {

uint64_t held_size(int fd) {
    struct stat st {};
    return fstat(fd, &st) == 0 ? uint64_t(st.st_size) : 0;
}

}  // namespace

// ---- BodySink ----

void BodySink::hold() {
    flush();
    held.reset(memfd_create("mta-message", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!held) {
        LOG_ERROR("event=memfd_failed qid=%s error=\"%s\"", wire::format_qid(msgid).c_str(), strerror(errno));
        failed = true;
    }
}

bool BodySink::seal(UniqueFd& copy) {
    flush();
    if (failed || !wire::seal_msgauth_body(held.get())) return false;
    copy.reset(fcntl(held.get(), F_DUPFD_CLOEXEC, 0));
    return copy.valid();
}

bool BodySink::cuts_fit(const std::vector<wire::MsgauthCut>& cuts) const {
    return wire::cuts_fit(cuts, held_size(held.get()));
}

bool BodySink::release(std::string_view prepend, const std::vector<wire::MsgauthCut>& cuts) {
    uint64_t pos = 0, end = held_size(held.get());
    bool ok = write_all(fd.get(), prepend);
    for (const wire::MsgauthCut& c : cuts) {
        ok = ok && copy_range(held.get(), fd.get(), pos, c.offset);
        pos = c.offset + c.length;
    }
    ok = ok && copy_range(held.get(), fd.get(), pos, end);
    held.reset();
    if (!ok) {
        LOG_ERROR("event=body_write_failed qid=%s error=\"%s\"", wire::format_qid(msgid).c_str(), strerror(errno));
        failed = true;
    }
    return ok;
}

// ---- Session ----

bool Session::msgauth_trusted() const {
    return !auth_user_.empty() || cfg_->in_mynetworks(reinterpret_cast<const sockaddr*>(&client_.addr));
}

// Trusted mail is signed only where keys exist; other mail is verified unless msgauth_verify = no.
bool Session::wants_msgauth() const { return msgauth_trusted() ? !cfg_->dkim_keys.empty() : cfg_->msgauth_verify; }

void Session::request_msgauth() {
    BodySink& body = *txn_->body;
    wire::MsgauthRequest r{body.msgid, client_.ip, helo_, txn_->sender.str(), auth_user_, msgauth_trusted(), UniqueFd()};
    if (!body.seal(r.body)) return end_transaction(451, "4.3.0", "Error: local problem writing the message");
    auto reqid = host_.msgauth_request(wire::encode(r, 0), id_);
    enter(State::wait_msgauth);
    if (!reqid) return on_msgauth_lost("no link");
    pending_reqid_ = *reqid;
    timeval tv{static_cast<time_t>(cfg_->msgauth_timeout), 0};
    evtimer_add(queue_timer_.get(), &tv);
}

// The transaction ends here without a commit: the body goes back to the queue, the client hears why.
void Session::end_transaction(int code, const char* enhanced, const std::string& text) {
    done_waiting();
    abort_body();
    reset_transaction();
    enter(State::ready);
    reply(code, enhanced, text);
}

void Session::on_msgauth_reply(uint64_t reqid, const wire::MsgauthReply& r) {
    if (state_ != State::wait_msgauth || reqid != pending_reqid_) return;  // after the timeout: too late
    const std::string qid = wire::format_qid(txn_->body->msgid);
    if (r.action != ipc::MsgauthAction::accept && r.action != ipc::MsgauthAction::hold) {
        std::string text;
        for (char c : r.text)
            if (c >= 0x20 && c < 0x7f) text += c;
        bool reject = r.action == ipc::MsgauthAction::reject;
        std::string enh = r.enhanced.empty() ? (reject ? "5.7.0" : "4.7.0") : r.enhanced;
        LOG_INFO("event=msgauth_refused qid=%s client=%s code=%d enhanced=%s text=\"%s\"", qid.c_str(), client_.ip.c_str(),
                 r.code, enh.c_str(), log::safe(text).c_str());
        end_transaction(r.code, enh.c_str(), text.empty() ? "Error: message refused" : text);
        resume();
        return;
    }
    if (!txn_->body->cuts_fit(r.cuts)) {
        LOG_ERROR("event=msgauth_bad_reply qid=%s reason=\"cut past the message\"", qid.c_str());
        return on_msgauth_lost("bad reply");
    }
    done_waiting();
    if (r.action == ipc::MsgauthAction::hold) {
        txn_->hold_reason = r.text;
        LOG_INFO("event=msgauth_hold qid=%s client=%s reason=\"%s\"", qid.c_str(), client_.ip.c_str(),
                 log::safe(r.text).c_str());
    }
    txn_->body->release(r.prepend, r.cuts);
    commit_body();
    resume();
}

void Session::on_msgauth_lost(const char* why) {
    if (state_ != State::wait_msgauth) return;
    bool accept = cfg_->msgauth_default_action == "accept";
    LOG_WARN("event=msgauth_unavailable qid=%s client=%s reason=\"%s\" action=%s",
             wire::format_qid(txn_->body->msgid).c_str(), client_.ip.c_str(), why, accept ? "accept" : "tempfail");
    if (!accept) {
        end_transaction(451, "4.7.0", "Error: message authentication unavailable, try again later");
    } else {
        done_waiting();
        txn_->body->release("", {});
        commit_body();
    }
    resume();
}

// ---- Server ----

void Server::on_msgauth(ipc::Message& m) {
    wire::MsgauthReply r;
    if (std::string err; !wire::decode(m, r, err)) malformed(Role::msgauth, "msgauth_reply: " + err);
    auto sid = msgauth_.take(m.reqid);
    if (!sid) return;  // its session gave up waiting, or is gone
    auto s = sessions_.find(*sid);
    if (s != sessions_.end()) s->second->on_msgauth_reply(m.reqid, r);
}

}  // namespace mta::smtpd
