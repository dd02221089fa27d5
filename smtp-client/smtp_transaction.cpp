// Session transactions: MAIL, RCPT (pipelined when offered), DATA and the body stream, or BDAT chunks
// when CHUNKING is offered (RFC 3030), and the final reply, mapped to per-recipient results.
// Replies are matched to commands strictly in order.
#include "smtp-client/smtp_session.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <unistd.h>

#include "common/fault.h"
#include "common/address.h"
#include "common/log.h"

namespace mta::smtp {
namespace {

std::string notify_param(uint64_t bits) {
    if (bits & ipc::kNotifyNever) return "NEVER";
    std::string s;
    auto add = [&](const char* w) { s += s.empty() ? w : std::string(",") + w; };
    if (bits & ipc::kNotifySuccess) add("SUCCESS");
    if (bits & ipc::kNotifyFailure) add("FAILURE");
    if (bits & ipc::kNotifyDelay) add("DELAY");
    return s;
}

void settle(Recipient& r, int code, std::string text) {
    r.final = true;
    r.status = status_for_code(code);
    r.text = std::move(text);
}

}  // namespace

std::string Session::mail_command() const {
    std::string c = "MAIL FROM:<" + job_->sender + ">";
    if (ext_.size) c += " SIZE=" + std::to_string(job_->message_size());
    if (job_->body_type != 0 && ext_.eightbitmime) c += " BODY=8BITMIME";
    if (job_->smtputf8 && ext_.smtputf8) c += " SMTPUTF8";
    if (job_->requiretls && ext_.requiretls) c += " REQUIRETLS";  // RFC 8689 §4.2; the delivery checked TLS
    if (ext_.dsn) {
        if (job_->ret == 1) c += " RET=FULL";
        if (job_->ret == 2) c += " RET=HDRS";
        if (!job_->envid.empty()) c += " ENVID=" + addr::xtext_encode(job_->envid);
    }
    return c + "\r\n";
}

std::string Session::rcpt_command(const Recipient& r) const {
    std::string c = "RCPT TO:<" + r.addr + ">";
    if (ext_.dsn) {
        if (r.notify) c += " NOTIFY=" + notify_param(r.notify);
        auto semi = r.orcpt.find(';');
        if (semi != std::string::npos)
            c += " ORCPT=" + r.orcpt.substr(0, semi + 1) + addr::xtext_encode(r.orcpt.substr(semi + 1));
    }
    return c + "\r\n";
}

void Session::transact(Job& job, TxDone done) {
    job_ = &job;
    tx_done_ = std::move(done);
    on_dead_ = nullptr;  // taken out of the cache: the delivery owns us now
    got_reply_ = mail_ok_ = false;
    sent_.clear();
    accepted_.clear();
    todo_.clear();
    expect_.clear();
    next_rcpt_ = 0;
    lmtp_replies_ = 0;
    encoder_ = BodyEncoder{};
    bdat_ = ext_.chunking && !settings_.lmtp;
    bdat_enc_ = BdatEncoder{};
    body_off_ = 0;
    for (auto& r : job.rcpts)
        if (!r.final) todo_.push_back(&r);
    transactions_++;
    phase_ = Phase::mail;
    arm(kCommandTimeout);
    std::string out = mail_command();
    expect_.push_back(Expect::mail);
    if (ext_.pipelining) {
        for (auto* r : todo_) {
            out += rcpt_command(*r);
            sent_.push_back(r);
            expect_.push_back(Expect::rcpt);
        }
        // BDAT is not sent ahead: the first chunk waits for the RCPT replies (no recipient, no chunk).
        if (!bdat_) {
            out += "DATA\r\n";
            expect_.push_back(Expect::data);
        }
        next_rcpt_ = todo_.size();
    }
    write(out);
}

void Session::on_tx_reply(const Reply& r) {
    if (phase_ == Phase::body) {
        // The server answered while we were still sending: it gave up on this message. A 2xx there
        // cannot accept a message the server has not seen: a protocol error, deferred (never "delivered").
        if (r.klass() == 2) {
            fail("protocol error from " + target_.hostip() + ": premature reply while sending message body: " +
                 r.summary());
            return;
        }
        for (auto* a : accepted_)
            if (!a->final) settle(*a, r.code, said(r) + " (in reply to DATA content)");
        tx_finished(false);
        return;
    }
    if (expect_.empty()) {
        fail("unexpected reply from " + target_.hostip() + ": " + r.summary());
        return;
    }
    got_reply_ = true;
    if (expect_.front() == Expect::dot && r.klass() == 2 && unsent() > 0) {
        // Acceptance before our final "." (or BDAT LAST) left this host: the reply is not about this message.
        fail("protocol error from " + target_.hostip() + ": premature reply before end of data: " + r.summary());
        return;
    }
    Expect e = expect_.front();
    expect_.pop_front();
    switch (e) {
    case Expect::mail: on_mail(r); return;
    case Expect::rcpt: on_rcpt(r); return;
    case Expect::data: on_data(r); return;
    case Expect::bdat: on_bdat(r); return;
    case Expect::dot: on_dot(r); return;
    case Expect::discard: send_rset(); return;
    case Expect::rset: tx_finished(r.klass() == 2); return;
    }
}

void Session::on_mail(const Reply& r) {
    if (r.klass() == 2) {
        mail_ok_ = true;
        phase_ = Phase::rcpt;
        if (!ext_.pipelining) send_next_rcpt();
        return;
    }
    for (auto* rc : todo_) settle(*rc, r.code, said(r) + " (in reply to MAIL FROM command)");
    if (!ext_.pipelining) send_rset();  // else the RCPT and DATA replies are still due
}

void Session::send_next_rcpt() {
    Recipient* rc = todo_[next_rcpt_++];
    sent_.push_back(rc);
    expect_.push_back(Expect::rcpt);
    phase_ = Phase::rcpt;
    arm(kCommandTimeout);
    write(rcpt_command(*rc));
}

void Session::on_rcpt(const Reply& r) {
    std::size_t replied = sent_.size() - std::size_t(std::count(expect_.begin(), expect_.end(), Expect::rcpt));
    Recipient* rc = sent_[replied - 1];
    if (mail_ok_) {
        if (r.klass() == 2) accepted_.push_back(rc);
        else settle(*rc, r.code, said(r) + " (in reply to RCPT TO command)");
    }
    if (ext_.pipelining) {
        if (bdat_ && expect_.empty()) after_rcpts();  // the last RCPT reply: chunks now, or RSET
        else if (!expect_.empty() && expect_.front() == Expect::data) phase_ = Phase::data;
        return;
    }
    if (r.code == 452) {
        // "Too many recipients": the rest waits for another transaction (the queue retries them).
        for (std::size_t i = next_rcpt_; i < todo_.size(); i++)
            settle(*todo_[i], 452, said(r) + " (in reply to RCPT TO command)");
        next_rcpt_ = todo_.size();
    }
    if (next_rcpt_ < todo_.size()) send_next_rcpt();
    else after_rcpts();
}

void Session::after_rcpts() {
    if (accepted_.empty()) {
        send_rset();
        return;
    }
    if (bdat_) {
        send_bdat();
        return;
    }
    expect_.push_back(Expect::data);
    phase_ = Phase::data;
    arm(kCommandTimeout);
    write("DATA\r\n");
}

void Session::on_data(const Reply& r) {
    if (!mail_ok_ || accepted_.empty()) {
        if (r.code == 354) {  // a server that wants data with no recipients: send an empty message
            expect_.push_back(Expect::discard);
            phase_ = Phase::dot;
            arm(kCommandTimeout);
            write(".\r\n");
        } else {
            send_rset();
        }
        return;
    }
    if (r.code != 354) {
        for (auto* a : accepted_) {
            a->final = true;
            a->status = r.klass() == 5 ? ipc::DeliveryStatus::bounced : ipc::DeliveryStatus::deferred;
            a->text = said(r) + " (in reply to DATA command)";
        }
        send_rset();
        return;
    }
    phase_ = Phase::body;
    pump_body();
}

// The next piece of the stored body into scratch_ (n = 0 at the end). On a storage error the connection
// is dropped before the final dot or BDAT LAST, so nothing half-read is ever delivered.
bool Session::read_body(ssize_t& n) {
    scratch_.resize(kBodyChunk);
    do n = pread(job_->body.get(), scratch_.data(), kBodyChunk, off_t(body_off_));
    while (n < 0 && errno == EINTR);
    if (n >= 0) return true;
    fail(std::string("4.3.0 error reading the queued message: ") + strerror(errno));
    return false;
}

void Session::pump_body() {
    evbuffer* out = bufferevent_get_output(bev_.get());
    std::string enc;
    while (evbuffer_get_length(out) < kBodyHighWater) {
        ssize_t n = 0;
        if (!read_body(n)) return;
        enc.clear();
        if (n == 0) {
            encoder_.finish(enc);
            write(enc);
            // LMTP (RFC 2033 §4.2): one reply per accepted recipient, in RCPT order; SMTP: one reply.
            for (std::size_t i = 0; i < (settings_.lmtp ? accepted_.size() : 1); i++) expect_.push_back(Expect::dot);
            phase_ = Phase::dot;
            arm(kDotTimeout);
            return;
        }
        body_off_ += uint64_t(n);
        encoder_.feed(std::string_view(scratch_.data(), std::size_t(n)), enc);
        write(enc);
    }
    arm(kBodyStallTimeout);
}

void Session::send_bdat() {
    std::string out;
    while (!bdat_enc_.next_chunk(out)) {
        ssize_t n = 0;
        if (!read_body(n)) return;
        if (n == 0) {
            bdat_enc_.finish();
            continue;
        }
        body_off_ += uint64_t(n);
        bdat_enc_.feed(std::string_view(scratch_.data(), std::size_t(n)));
    }
    write(out);
    if (bdat_enc_.last_sent()) {
        expect_.push_back(Expect::dot);  // the reply to BDAT LAST is the final reply, like the one to "."
        phase_ = Phase::dot;
        arm(kDotTimeout);
        return;
    }
    // One chunk in flight at a time: the next goes after this one's 250.
    expect_.push_back(Expect::bdat);
    phase_ = Phase::bdat;
    arm(kBodyStallTimeout);
}

void Session::on_bdat(const Reply& r) {
    if (r.klass() == 2) {
        send_bdat();
        return;
    }
    // RFC 3030 §2: after a failed chunk the transaction is over; no further BDAT, RSET to reuse.
    for (auto* a : accepted_) settle(*a, r.code, said(r) + " (in reply to BDAT command)");
    send_rset();
}

void Session::on_dot(const Reply& r) {
    if (settings_.lmtp) {
        Recipient* a = accepted_[lmtp_replies_++];
        settle(*a, r.code, r.klass() == 2 ? said(r) : said(r) + " (in reply to end of DATA command)");
        if (lmtp_replies_ < accepted_.size()) {
            arm(kDotTimeout);
            return;
        }
        tx_finished(true);
        return;
    }
    const char* stage = bdat_ ? " (in reply to BDAT LAST command)" : " (in reply to end of DATA command)";
    if (r.klass() == 2) MTA_CRASH_POINT("smtp.after_remote_250");  // delivered, the queue not told
    for (auto* a : accepted_) {
        if (r.klass() == 2) settle(*a, r.code, said(r));
        else settle(*a, r.code, said(r) + stage);
        // RFC 3461 §5.2.1/§5.2.2: a DSN-capable next hop got NOTIFY and reports success itself.
        if (r.klass() == 2) a->handoff = ext_.dsn ? 2 : 1;
    }
    tx_finished(true);
}

std::size_t Session::unsent() const {
    if (!bev_) return 0;
    std::size_t n = evbuffer_get_length(bufferevent_get_output(bev_.get()));
    if (bufferevent* under = bufferevent_get_underlying(bev_.get())) n += evbuffer_get_length(bufferevent_get_output(under));
    return n;
}

void Session::send_rset() {
    expect_.push_back(Expect::rset);
    phase_ = Phase::rset;
    arm(kCommandTimeout);
    write("RSET\r\n");
}

void Session::tx_finished(bool usable) {
    event_del(timer_.get());
    phase_ = usable ? Phase::idle : Phase::dead;
    if (!usable && bev_.get()) bufferevent_disable(bev_.get(), EV_READ | EV_WRITE);
    job_ = nullptr;
    TxOutcome o;
    o.usable = usable;
    auto cb = std::move(tx_done_);
    cb(std::move(o));
}

void Session::tx_failed(const std::string& why) {
    // Undecided recipients stay undecided: the delivery chooses between retrying and deferring.
    job_ = nullptr;
    TxOutcome o;
    o.usable = false;
    o.nothing_received = !got_reply_;
    o.error = why;
    auto cb = std::move(tx_done_);
    if (cb) cb(std::move(o));
}

}  // namespace mta::smtp
