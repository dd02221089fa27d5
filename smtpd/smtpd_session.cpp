// Session I/O: bufferevent callbacks, command framing with pipelining, replies, timeouts and
// back-pressure. Memory per session stays bounded by the watermarks set here.
#include "smtpd/smtpd_session.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdlib>

#include <openssl/err.h>

#include "common/log.h"
#include "common/metrics.h"

namespace mta::smtpd {
namespace {

constexpr std::size_t kOutputHigh = 64 * 1024;  // stop reading while the client ignores replies
constexpr std::size_t kInputHigh = 64 * 1024;   // libevent stops reading past this

// The stage label of mta_smtpd_rejects_total: which command a negative reply answers.
const char* verb_stage(Verb v) {
    switch (v) {
    case Verb::helo: case Verb::ehlo: return "helo";
    case Verb::mail: return "mail";
    case Verb::rcpt: return "rcpt";
    case Verb::data: case Verb::bdat: return "data";
    case Verb::auth: return "auth";
    case Verb::starttls: return "starttls";
    default: return "other";
    }
}

}  // namespace

Session::Session(SessionHost& host, event_base* base, std::shared_ptr<const Config> cfg,
                 std::shared_ptr<const Resources> res, uint64_t id, UniqueFd fd, ClientInfo client)
    : host_(host), base_(base), cfg_(std::move(cfg)), res_(std::move(res)), id_(id), client_(std::move(client)) {
    if (client_.kind == ListenKind::smtps) {  // RFC 8314 implicit TLS: the greeting waits for the handshake
        SSL* ssl = res_->tls ? SSL_new(res_->tls.get()) : nullptr;
        if (ssl)
            bev_.reset(bufferevent_openssl_socket_new(base_, fd.get(), ssl, BUFFEREVENT_SSL_ACCEPTING, tls_bufferevent_options()));
        if (ssl && !bev_) SSL_free(ssl);
        tls_ = true;
    } else {
        bev_.reset(bufferevent_socket_new(base_, fd.get(), BEV_OPT_CLOSE_ON_FREE));
    }
    if (bev_) fd.release();  // owned by the bufferevent now; otherwise UniqueFd closes it
    queue_timer_.reset(evtimer_new(base_, &Session::queue_timeout_cb, this));
    auth_timer_.reset(evtimer_new(base_, &Session::auth_delay_cb, this));
    rate_timer_.reset(event_new(base_, -1, EV_PERSIST, &Session::rate_tick_cb, this));
}

Session::~Session() = default;

// Callbacks, watermarks and timeouts; again after STARTTLS put an SSL filter in front.
void Session::setup_bev() {
    bufferevent_setcb(bev_.get(), &Session::read_cb, &Session::write_cb, &Session::event_cb, this);
    std::size_t high = std::max<std::size_t>(kInputHigh, cfg_->smtpd_line_length_limit + 4);
    bufferevent_setwatermark(bev_.get(), EV_READ, 0, high);
    timeval tv{static_cast<time_t>(cfg_->smtpd_timeout), 0};
    bufferevent_set_timeouts(bev_.get(), &tv, &tv);
    bufferevent_enable(bev_.get(), EV_READ | EV_WRITE);
}

void Session::start() {
    if (!bev_ || !queue_timer_ || !auth_timer_ || !rate_timer_) {
        LOG_ERROR("event=session_failed client=%s reason=\"out of memory\"", client_.ip.c_str());
        enter(State::closed);
        host_.session_done(id_);
        return;
    }
    setup_bev();
    metrics::registry().add("mta_smtpd_sessions_total", metrics::labels({{"listener", listen_kind_name(client_.kind)}}));
    LOG_INFO("event=connect client=%s session=%llu%s", client_.ip.c_str(), static_cast<unsigned long long>(id_),
             client_.kind == ListenKind::smtps ? " tls=implicit" : "");
    if (!cfg_->smtpd_milters.empty()) return start_milters();  // they see the connection before the 220
    greet();
}

void Session::greet() {
    reply(220, "", cfg_->hostname + " ESMTP");
    // smtps: the handshake may have finished while the milters were asked.
    enter(client_.kind == ListenKind::smtps && tls_version_.empty() ? State::tls_handshake : State::pre_helo);
}

// Illegal transitions are bugs of this file set, not of the client: stop loudly (the master restarts
// the process) rather than serve a session whose state nobody can reason about.
void Session::enter(State to) {
    if (to == state_) return;
    // closed is final, and may come in the middle of a verb: an OpenSSL bufferevent reports a failed
    // write (the client reset the connection) from inside bufferevent_write, so the reply of, say, EHLO
    // can finish the session before EHLO's own transition to ready. That verb unwinds into a session
    // that is over; its transition means nothing any more (fresh-check saw mta-smtpd abort on it).
    if (state_ == State::closed) return;
    if (!transition_allowed(state_, to)) {
        LOG_ERROR("event=bad_transition client=%s session=%llu from=%s to=%s", client_.ip.c_str(),
                  static_cast<unsigned long long>(id_), state_name(state_), state_name(to));
        std::abort();
    }
    LOG_DEBUG("event=state client=%s session=%llu from=%s to=%s", client_.ip.c_str(),
              static_cast<unsigned long long>(id_), state_name(state_), state_name(to));
    state_ = to;
}

void Session::read_cb(bufferevent*, void* arg) { static_cast<Session*>(arg)->process_input(); }

void Session::write_cb(bufferevent*, void* arg) {
    auto* s = static_cast<Session*>(arg);
    if (s->state_ == State::closing) {
        // An OpenSSL bufferevent runs this callback deferred: it may come from an earlier flush (the
        // smtps greeting) after pipelined commands queued more replies (EHLO ... QUIT). Those go first.
        if (evbuffer_get_length(bufferevent_get_output(s->bev_.get())) == 0) s->finish();
        return;
    }
    if (s->read_paused_) {
        s->read_paused_ = false;
        if (!s->peer_eof_) bufferevent_enable(s->bev_.get(), EV_READ);
        s->process_input();
    }
}

void Session::event_cb(bufferevent*, short what, void* arg) {
    auto* s = static_cast<Session*>(arg);
    if (what & BEV_EVENT_CONNECTED) {  // TLS handshake done (STARTTLS or smtps)
        s->tls_ready();
        return;
    }
    if ((what & BEV_EVENT_ERROR) && s->tls_) {
        unsigned long e = bufferevent_get_openssl_error(s->bev_.get());
        char buf[256] = "";
        if (e) ERR_error_string_n(e, buf, sizeof buf);
        LOG_INFO("event=tls_error client=%s error=\"%s\"", s->client_.ip.c_str(), log::safe(buf).c_str());
    }
    if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) && s->state_ != State::closing) {
        s->close_with(421, "4.4.2", s->cfg_->hostname + " Error: timeout exceeded");
        return;
    }
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR)) {
        // Half-close (`printf ... | nc -N`): the client may still read. Like Postfix, answer every
        // complete command it sent, including a message waiting for the queue, and only then close.
        s->peer_eof_ = true;
        if (s->state_ != State::closing) s->process_input();
        else if (evbuffer_get_length(bufferevent_get_output(s->bev_.get())) == 0) s->finish();
        return;
    }
    s->finish();  // error, or a client that stopped reading
}

void Session::queue_timeout_cb(int, short, void* arg) {
    auto* s = static_cast<Session*>(arg);
    if (s->state_ == State::wait_msgauth) return s->on_msgauth_lost("timeout");
    LOG_WARN("event=queue_timeout client=%s", s->client_.ip.c_str());
    s->on_queue_lost();
}

// smtpd_min_data_rate: a client that trickles its body (each byte within smtpd_timeout, but far too
// slowly overall) would hold a session and a queue file for ever. Only seconds spent in DATA/BDAT
// count; waiting for the queue or for the next BDAT command does not.
void Session::watch_data_rate() {
    if (cfg_->smtpd_min_data_rate == 0 || evtimer_pending(rate_timer_.get(), nullptr)) return;
    timeval tv{1, 0};
    event_add(rate_timer_.get(), &tv);
}

void Session::rate_tick_cb(int, short, void* arg) {
    auto* s = static_cast<Session*>(arg);
    if (s->state_ != State::data && s->state_ != State::bdat && s->state_ != State::bdat_discard) {
        event_del(s->rate_timer_.get());  // the window's counts stay until the transaction ends
        return;
    }
    if (++s->rate_seconds_ < s->cfg_->smtpd_min_data_rate_window) return;
    uint64_t want = s->cfg_->smtpd_min_data_rate * s->rate_seconds_;
    if (s->rate_bytes_ < want) {
        LOG_INFO("event=slow_data client=%s bytes=%llu seconds=%llu", s->client_.ip.c_str(),
                 static_cast<unsigned long long>(s->rate_bytes_), static_cast<unsigned long long>(s->rate_seconds_));
        s->close_with(421, "4.4.2", s->cfg_->hostname + " Error: data transfer too slow");
        return;
    }
    s->rate_bytes_ = s->rate_seconds_ = 0;
}

bool Session::output_full() {
    if (evbuffer_get_length(bufferevent_get_output(bev_.get())) <= kOutputHigh) return false;
    if (!read_paused_) {
        read_paused_ = true;
        bufferevent_disable(bev_.get(), EV_READ);
    }
    return true;
}

void Session::process_input() {
    process_commands();
    // After the client's EOF nothing new can arrive: once the buffered commands are answered (and no
    // queue reply or delayed AUTH answer is due), flush the replies and close.
    if (!peer_eof_ || !bev_ || ending() || waits_for_queue(state_) || state_ == State::wait_msgauth ||
        state_ == State::wait_milter ||
        state_ == State::auth_delay || read_paused_)
        return;
    enter(State::closing);
    abort_body();
    evtimer_del(queue_timer_.get());
    if (evbuffer_get_length(bufferevent_get_output(bev_.get())) == 0) finish();
}

// Pipelining: handle every complete command already buffered, in order; replies collect in the
// output buffer and leave together when the loop returns.
void Session::process_commands() {
    while (!ending() && !output_full()) {
        evbuffer* in = bufferevent_get_input(bev_.get());  // STARTTLS swaps bev_ between two commands
        if (state_ == State::data) {
            watch_data_rate();
            read_data();
            if (state_ == State::data) return;
            continue;
        }
        if (state_ == State::bdat || state_ == State::bdat_discard) {
            State was = state_;
            watch_data_rate();
            read_bdat();
            if (state_ == was) return;
            continue;
        }
        // Waiting for the queue, a delayed AUTH answer or a TLS handshake: the input stays unread.
        if (!reads_commands(state_) && !in_auth_exchange(state_)) return;
        std::size_t len = evbuffer_get_length(in);
        if (len == 0) return;
        std::size_t limit = cfg_->smtpd_line_length_limit;
        std::size_t want = std::min(len, limit + 2);
        const char* p = reinterpret_cast<const char*>(evbuffer_pullup(in, static_cast<ev_ssize_t>(want)));
        if (!p) return;
        Frame f = next_command(std::string_view(p, want), limit, discarding_);
        std::string line(f.line);  // the view dies with the drain below
        evbuffer_drain(in, f.consumed);
        switch (f.kind) {
        case FrameKind::need_more:
            if (f.consumed == 0) return;
            continue;
        case FrameKind::line:
            handle_line(line);
            break;
        case FrameKind::bare_lf:
        case FrameKind::too_long:
            if (in_auth_exchange(state_)) enter(State::ready);  // a broken SASL response ends the exchange
            reply(500, "5.5.2", f.kind == FrameKind::too_long ? "Line too long"
                                : "Syntax error: bare <LF> received, commands end with <CR><LF>");
            break;
        }
        if (!ending() && errors_ >= cfg_->smtpd_error_limit)
            close_with(421, "4.7.0", cfg_->hostname + " Error: too many errors");
    }
}

void Session::handle_line(std::string_view line) {
    if (in_auth_exchange(state_)) {  // a SASL response line, not a command
        auth_input(line);
        return;
    }
    Command c = parse_command(line);
    stage_ = verb_stage(c.verb);
    if (c.bad_chars) {
        reply(500, "5.5.2", "Syntax error: invalid character in command");
        return;
    }
    dispatch(c);
}

void Session::reply(int code, const char* enhanced, const std::string& text) {
    reply_lines(code, enhanced, {text});
}

void Session::reply_lines(int code, const char* enhanced, const std::vector<std::string>& lines) {
    if (!bev_ || ending()) return;
    std::string out;
    for (std::size_t i = 0; i < lines.size(); i++) {
        out += std::to_string(code);
        out += i + 1 < lines.size() ? '-' : ' ';
        if (*enhanced) {
            out += enhanced;
            out += ' ';
        }
        out += lines[i];
        out += "\r\n";
    }
    bufferevent_write(bev_.get(), out.data(), out.size());
    if (final_dot_ && code != 354) {
        std::chrono::duration<double> took = std::chrono::steady_clock::now() - *final_dot_;
        metrics::registry().observe("mta_smtpd_final_dot_seconds", "", took.count());
        final_dot_.reset();
    }
    if (code >= 400) {
        std::string_view enh(enhanced);
        enh = enh.substr(0, enh.find('.', 2));  // "5.7.1" -> "5.7"
        metrics::registry().add("mta_smtpd_rejects_total",
                                metrics::labels({{"stage", stage_}, {"class", code >= 500 ? "5xx" : "4xx"},
                                                 {"enhanced", enh.empty() ? "none" : enh}}));
        errors_++;
        LOG_INFO("event=reject client=%s code=%d enhanced=%s reason=\"%s\"", client_.ip.c_str(), code,
                 *enhanced ? enhanced : "-", log::safe(lines.empty() ? "" : lines.back()).c_str());
    }
}

void Session::close_with(int code, const char* enhanced, const std::string& text) {
    if (ending()) return;
    reply(code, enhanced, text);
    enter(State::closing);
    abort_body();
    evtimer_del(queue_timer_.get());
    bufferevent_disable(bev_.get(), EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(bev_.get())) == 0) finish();
}

void Session::finish() {
    if (!bev_) return;
    abort_body();
    evtimer_del(queue_timer_.get());
    evtimer_del(auth_timer_.get());
    event_del(rate_timer_.get());
    if (pending_reqid_ != 0)
        LOG_WARN("event=disconnect_while_waiting client=%s pending=%s", client_.ip.c_str(),
                 pending_commit_ ? "commit" : "body_open");
    bufferevent_setcb(bev_.get(), nullptr, nullptr, nullptr, nullptr);
    bufferevent_disable(bev_.get(), EV_READ | EV_WRITE);
    if (tls_) tls_shutdown();
    discard_unread_input();
    bev_.reset();
    enter(State::closed);
    LOG_INFO("event=disconnect client=%s session=%llu messages=%llu errors=%llu", client_.ip.c_str(),
             static_cast<unsigned long long>(id_), static_cast<unsigned long long>(messages_),
             static_cast<unsigned long long>(errors_));
    host_.session_done(id_);
}

// close(2) on a socket with unread input sends RST instead of FIN, and the RST can make the client's
// kernel drop our last reply (421, 221) before the client reads it. Discard what already arrived,
// without blocking and bounded, so that the close is an orderly one in the usual case.
void Session::discard_unread_input() {
    bufferevent* under = bufferevent_get_underlying(bev_.get());
    int fd = bufferevent_getfd(under ? under : bev_.get());
    if (fd < 0) return;
    char buf[4096];
    for (int i = 0; i < 16; i++)
        if (recv(fd, buf, sizeof buf, MSG_DONTWAIT) <= 0) break;
}

// Best effort, never blocking: send close_notify, and for STARTTLS sessions push out what the SSL
// filter already handed to the socket bufferevent (the last reply), which freeing would drop.
void Session::tls_shutdown() {
    SSL* ssl = bufferevent_openssl_get_ssl(bev_.get());
    if (ssl && SSL_is_init_finished(ssl)) SSL_shutdown(ssl);
    bufferevent* under = bufferevent_get_underlying(bev_.get());
    if (!under) return;
    evbuffer* out = bufferevent_get_output(under);
    evbuffer_unfreeze(out, 1);  // a bufferevent's output is drained only by the bufferevent itself
    for (int i = 0; i < 8 && evbuffer_get_length(out) > 0; i++)
        if (evbuffer_write(out, bufferevent_getfd(under)) <= 0) break;
}

// `wait` is wait_open_data, wait_open_bdat or wait_commit.
void Session::wait_queue(State wait, std::optional<uint64_t> reqid) {
    if (!reqid) {
        LOG_WARN("event=queue_unavailable client=%s", client_.ip.c_str());
        queue_failed(wait, 451, "4.3.0", "Queue unavailable, try again later");
        return;
    }
    pending_reqid_ = *reqid;
    pending_commit_ = wait == State::wait_commit;
    enter(wait);
    timeval tv{static_cast<time_t>(std::max<uint64_t>(cfg_->smtpd_timeout, 10)), 0};
    evtimer_add(queue_timer_.get(), &tv);
}

bool Session::waiting_for(uint64_t reqid, bool commit) const {
    if (reqid != pending_reqid_) return false;
    if (commit) return state_ == State::wait_commit;
    return state_ == State::wait_open_data || state_ == State::wait_open_bdat;
}

void Session::done_waiting() {
    pending_reqid_ = 0;
    pending_commit_ = false;
    evtimer_del(queue_timer_.get());
}

bool Session::in_transaction_io() const {
    return state_ == State::data || state_ == State::bdat || state_ == State::bdat_discard ||
           state_ == State::wait_milter || waits_for_queue(state_) || (txn_ && txn_->body);
}

void Session::shutdown() {
    stopping_ = true;
    if (ending()) return;
    if (!in_transaction_io()) close_with(421, "4.3.2", cfg_->hostname + " Service shutting down");
}

}  // namespace mta::smtpd
