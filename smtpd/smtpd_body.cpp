// DATA and BDAT: ask the queue for a body file, stream the body through BodyReader into it, then
// commit. The final 250 is sent only after the queue's commit_ok (DESIGN §6).
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/fault.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/mail_headers.h"
#include "common/wire/wire.h"
#include "smtpd/smtpd_policy.h"
#include "smtpd/smtpd_session.h"

namespace mta::smtpd {
namespace {

constexpr std::size_t kWriteBuffer = 64 * 1024;

}  // namespace

void BodySink::write(std::string_view s) {
    buf.append(s);
    if (buf.size() >= kWriteBuffer) flush();
}

void BodySink::flush() {
    if (!failed && !write_all(held ? held.get() : fd.get(), buf)) {
        LOG_ERROR("event=body_write_failed qid=%s error=\"%s\"", format_qid(msgid).c_str(), strerror(errno));
        failed = true;
    }
    buf.clear();
}

bool BodySink::finish() {
    flush();
    // No fsync here: mta-queue makes the whole commit batch durable with one syncfs before it
    // answers commit_ok (queue-manager/group_commit.cpp), so this process never blocks on the disk.
    if (::close(fd.release()) != 0 && !failed) {
        LOG_ERROR("event=body_close_failed qid=%s error=\"%s\"", format_qid(msgid).c_str(), strerror(errno));
        failed = true;
    }
    std::string().swap(buf);
    return !failed;
}

bool Session::check_data(const Command& c) {
    if (!c.arg.empty()) {
        reply(501, "5.5.4", "Syntax: DATA");
        return false;
    }
    if (Reply r = verb_refusal(Verb::data, state_, esmtp_)) {
        reply(r);
        return false;
    }
    return true;
}

void Session::proceed_data() { open_body(State::wait_open_data); }

// A refused BDAT still announced its chunk: it is read and dropped, so the client stays in step.
std::optional<BdatArgs> Session::check_bdat(const Command& c) {
    auto b = parse_bdat(c.arg);
    if (!b) {  // without a size we cannot skip the chunk; the client is out of sync either way
        reply(501, "5.5.4", "Syntax: BDAT size [LAST]");
        return std::nullopt;
    }
    if (Reply r = verb_refusal(Verb::bdat, state_, esmtp_)) {
        reply(r);
        discard_chunk(b->size, state_);
        return std::nullopt;
    }
    if (b->size > cfg_->message_size_limit || txn_->bdat_octets + b->size > cfg_->message_size_limit) {
        reply(552, "5.3.4", "Error: message too large");
        abort_body();
        reset_transaction();
        discard_chunk(b->size, State::ready);
        return std::nullopt;
    }
    return b;
}

// In rcpt the first chunk opens the body file; in bdat_next the next one goes into it.
void Session::proceed_bdat(const BdatArgs& b) {
    txn_->bdat_octets += b.size;
    bdat_remaining_ = bdat_chunk_ = b.size;
    bdat_last_ = b.last;
    if (state_ == State::rcpt) {
        open_body(State::wait_open_bdat);
        return;
    }
    enter(State::bdat);
}

void Session::discard_chunk(uint64_t size, State after) {
    bdat_remaining_ = size;
    after_discard_ = after;
    enter(State::bdat_discard);
}

void Session::open_body(State why) {  // why: wait_open_data or wait_open_bdat
    wait_queue(why, host_.queue_request(wire::encode(wire::BodyOpen{}, 0), id_));
}

void Session::on_body_open(uint64_t reqid, uint64_t msgid, UniqueFd fd) {
    if (!waiting_for(reqid, false) || !txn_) {  // stale (we timed out): give it back
        host_.queue_notify(wire::encode(wire::Abort{msgid}, 0));
        return;
    }
    bool data = state_ == State::wait_open_data;
    done_waiting();
    txn_->body.emplace();
    txn_->body->fd = std::move(fd);
    txn_->body->msgid = msgid;
    txn_->body->buf.reserve(kWriteBuffer);
    std::time_t when = host_.now();
    long gmtoff = local_gmtoff(when);
    txn_->body->write(received_header(when, gmtoff));
    if (wants_msgauth() || milters_) txn_->body->hold();
    auto mode = data ? BodyReader::Mode::dot : BodyReader::Mode::raw;
    // Postfix's cleanup adds a missing Message-ID:/Date: only for its own clients (local_header_rewrite_clients):
    // here the authenticated ones. Relayed mail, mynetworks included, passes unchanged (DKIM, end-to-end).
    MissingHeaders add;
    if (!auth_user_.empty()) add = {make_message_id(when, format_qid(msgid), cfg_->hostname), rfc5322_date(when, gmtoff)};
    txn_->reader = std::make_unique<BodyReader>(mode, cfg_->message_size_limit, std::move(add));
    if (milters_) return ask_milters_data(data);  // the queue id exists now: milters see it at DATA
    open_data(data);
}

void Session::open_data(bool data) {
    if (data) {
        enter(State::data);
        reply(354, "", "End data with <CR><LF>.<CR><LF>");
    } else {
        enter(State::bdat);
    }
    resume();
}

void Session::read_data() {
    evbuffer* in = bufferevent_get_input(bev_.get());
    BodyReader& reader = *txn_->reader;
    BodySink& body = *txn_->body;
    while (!reader.done() && evbuffer_get_length(in) > 0) {
        evbuffer_iovec vec;
        if (evbuffer_peek(in, -1, nullptr, &vec, 1) < 1) break;
        std::size_t used = reader.feed(std::string_view(static_cast<const char*>(vec.iov_base), vec.iov_len), body.buf);
        evbuffer_drain(in, used);
        rate_bytes_ += used;
        if (body.buf.size() >= kWriteBuffer) body.flush();
    }
    if (!reader.done()) return;
    final_dot_ = std::chrono::steady_clock::now();
    if (!refuse_body()) commit_body();
}

void Session::read_bdat() {
    evbuffer* in = bufferevent_get_input(bev_.get());
    while (bdat_remaining_ > 0 && evbuffer_get_length(in) > 0) {
        evbuffer_iovec vec;
        if (evbuffer_peek(in, -1, nullptr, &vec, 1) < 1) break;
        std::size_t n = static_cast<std::size_t>(std::min<uint64_t>(vec.iov_len, bdat_remaining_));
        if (state_ == State::bdat) {
            txn_->reader->feed(std::string_view(static_cast<const char*>(vec.iov_base), n), txn_->body->buf);
            if (txn_->body->buf.size() >= kWriteBuffer) txn_->body->flush();
        }
        evbuffer_drain(in, n);
        rate_bytes_ += n;
        bdat_remaining_ -= n;
    }
    if (bdat_remaining_ == 0) end_of_chunk();
}

void Session::end_of_chunk() {
    if (state_ == State::bdat_discard) {
        enter(after_discard_);
        return;
    }
    if (bdat_last_) {
        txn_->reader->finish(txn_->body->buf);
        final_dot_ = std::chrono::steady_clock::now();
        if (!refuse_body()) commit_body();
        return;
    }
    if (refuse_body()) return;
    enter(State::bdat_next);
    reply(250, "2.0.0", std::to_string(bdat_chunk_) + " octets received");
}

// Checks the finished (or partial, for BDAT) body; on refusal replies, aborts and resets.
bool Session::refuse_body() {
    const BodyReader& r = *txn_->reader;
    Reply e;
    if (r.too_big()) e = {552, "5.3.4", "Error: message too large"};
    else if (r.nul()) e = {550, "5.6.0", "Error: NUL bytes not allowed in message"};
    else if (r.bare_cr_lf()) e = {550, "5.6.11", "Error: bare CR or LF not allowed (RFC 5321 2.3.8)"};
    else if (r.received_headers() > cfg_->hop_count_limit) e = {554, "5.4.6", "Error: too many hops"};
    else if (txn_->body->failed) e = {451, "4.3.0", "Error: local problem writing the message"};
    if (!e) return false;
    LOG_INFO("event=refused qid=%s client=%s size=%llu", format_qid(txn_->body->msgid).c_str(), client_.ip.c_str(),
             static_cast<unsigned long long>(r.size()));
    abort_body();
    reset_transaction();
    enter(State::ready);
    reply(e);
    return true;
}

// The milters first (they may change the message), then mta-msgauth (which signs the result), then
// the queue. Each of the first two holds the message in a memfd and comes back here.
void Session::commit_body() {
    BodySink& body = *txn_->body;
    if (body.held && milters_ && !txn_->milters_done) return run_content_milters();
    if (body.held && wants_msgauth()) {  // its verdict comes back to on_msgauth_reply
        request_msgauth();
        return;
    }
    if (body.held && !body.release("", {})) {
        abort_body();
        reset_transaction();
        enter(State::ready);
        reply(451, "4.3.0", "Error: local problem writing the message");
        return;
    }
    if (!body.finish()) {
        abort_body();
        reset_transaction();
        enter(State::ready);
        reply(451, "4.3.0", "Error: local problem writing the message");
        return;
    }
    MTA_CRASH_POINT("smtpd.body.written");  // the body file complete, no commit asked for
    committed_msgid_ = body.msgid;
    ipc::Message m = commit_message();
    txn_->body.reset();  // the fd is closed; from now on only the queue may discard the message
    wait_queue(State::wait_commit, host_.queue_request(std::move(m), id_));
}

void Session::on_commit_ok(uint64_t reqid, uint64_t msgid) {
    if (!waiting_for(reqid, true)) {
        LOG_WARN("event=late_commit_ok qid=%s client=%s", format_qid(msgid).c_str(), client_.ip.c_str());
        return;
    }
    if (msgid != committed_msgid_ || !txn_) {
        LOG_ERROR("event=unexpected_commit_ok qid=%s client=%s", format_qid(msgid).c_str(), client_.ip.c_str());
        queue_failed(state_, 451, "4.3.0", "Queue error, try again later");
        resume();
        return;
    }
    MTA_CRASH_POINT("smtpd.before_250");  // queued and durable, the client not told
    done_waiting();
    messages_++;
    junk_ = 0;
    LOG_INFO("event=queued qid=%s from=<%s> nrcpt=%zu size=%llu client=%s", format_qid(msgid).c_str(),
             log::safe(txn_->sender.str()).c_str(), txn_->rcpts.size(),
             static_cast<unsigned long long>(txn_->reader ? txn_->reader->size() : 0), client_.ip.c_str());
    reset_transaction();
    enter(State::ready);
    reply(250, "2.0.0", "Ok: queued as " + format_qid(msgid));
    resume();
}

void Session::on_queue_fail(uint64_t reqid, int code, const std::string& enhanced, const std::string& text) {
    if (!waiting_for(reqid, false) && !waiting_for(reqid, true)) return;
    queue_failed(state_, code, enhanced.c_str(), text);
    resume();
}

void Session::on_queue_lost() {
    if (!waits_for_queue(state_)) return;
    queue_failed(state_, 451, "4.3.0", "Queue unavailable, try again later");
    resume();
}

// A request to the queue failed (`waited`: the wait state it was, or would have been, answered in):
// reply, drop the transaction, and for BDAT skip the chunk.
void Session::queue_failed(State waited, int code, const char* enhanced, const std::string& text) {
    uint64_t chunk = bdat_remaining_;
    done_waiting();
    abort_body();
    reset_transaction();
    enter(State::ready);
    reply(code, enhanced, text);
    if (waited == State::wait_open_bdat) discard_chunk(chunk, State::ready);
}

void Session::resume() {
    if (ending() || !bev_) return;
    if (stopping_ && !in_transaction_io()) {
        close_with(421, "4.3.2", cfg_->hostname + " Service shutting down");
        return;
    }
    process_input();
}

void Session::abort_body() {
    if (!txn_ || !txn_->body) return;
    host_.queue_notify(wire::encode(wire::Abort{txn_->body->msgid}, 0));
    txn_->body.reset();
}

long Session::local_gmtoff(std::time_t when) {
    struct tm tm {};
    localtime_r(&when, &tm);
    return tm.tm_gmtoff;
}

std::string Session::received_header(std::time_t when, long gmtoff) const {
    TraceInfo t;
    t.helo = helo_;
    t.client_ip = client_.ip;
    t.client_ipv6 = client_.ipv6;
    t.hostname = cfg_->hostname;
    t.protocol = protocol_name();
    t.tls_version = tls_version_;
    t.tls_cipher = tls_cipher_;
    t.tls_bits = tls_bits_;
    t.msgid = txn_->body->msgid;
    if (txn_->client_rcpts == 1) t.single_rcpt = txn_->first_rcpt;  // as the client wrote it, not expanded
    t.when = when;
    t.gmtoff = gmtoff;
    return format_received(t);
}

ipc::Message Session::commit_message() const {
    wire::Commit c;
    c.msgid = txn_->body->msgid;
    c.sender = txn_->sender.str();
    for (auto& r : txn_->rcpts) c.rcpts.push_back({r.addr, r.params.notify, r.params.orcpt});
    c.size = txn_->params.size;
    c.body_type = static_cast<uint64_t>(txn_->params.body);
    c.smtputf8 = txn_->params.smtputf8;
    c.envid = txn_->params.envid;
    c.ret = static_cast<uint64_t>(txn_->params.ret);
    c.requiretls = txn_->params.requiretls;
    c.client_addr = client_.ip;
    c.client_helo = helo_;
    c.auth_user = auth_user_;
    c.has_arrival = true;
    c.arrival = static_cast<uint64_t>(txn_->arrival);
    c.hold_reason = txn_->hold_reason;
    return wire::encode(c, 0);
}

}  // namespace mta::smtpd
