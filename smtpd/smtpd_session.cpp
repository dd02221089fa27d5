// Session I/O: bufferevent callbacks, command framing with pipelining, replies, timeouts and
// back-pressure. Memory per session stays bounded by the watermarks set here.
#include "smtpd/smtpd_session.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include <algorithm>

#include "common/log.h"

namespace mta::smtpd {
namespace {

constexpr std::size_t kOutputHigh = 64 * 1024;  // stop reading while the client ignores replies
constexpr std::size_t kInputHigh = 64 * 1024;   // libevent stops reading past this

}  // namespace

Session::Session(SessionHost& host, event_base* base, std::shared_ptr<const Config> cfg, uint64_t id, UniqueFd fd,
                 ClientInfo client)
    : host_(host), base_(base), cfg_(std::move(cfg)), id_(id), client_(std::move(client)) {
    bev_ = bufferevent_socket_new(base_, fd.get(), BEV_OPT_CLOSE_ON_FREE);
    if (bev_) fd.release();  // owned by the bufferevent now; otherwise UniqueFd closes it
    queue_timer_ = evtimer_new(base_, &Session::queue_timeout_cb, this);
}

Session::~Session() {
    if (bev_) bufferevent_free(bev_);
    if (queue_timer_) event_free(queue_timer_);
}

void Session::start() {
    if (!bev_ || !queue_timer_) {
        LOG_ERROR("event=session_failed client=%s reason=\"out of memory\"", client_.ip.c_str());
        state_ = State::closing;
        host_.session_done(id_);
        return;
    }
    bufferevent_setcb(bev_, &Session::read_cb, &Session::write_cb, &Session::event_cb, this);
    std::size_t high = std::max<std::size_t>(kInputHigh, cfg_->smtpd_line_length_limit + 4);
    bufferevent_setwatermark(bev_, EV_READ, 0, high);
    timeval tv{static_cast<time_t>(cfg_->smtpd_timeout), 0};
    bufferevent_set_timeouts(bev_, &tv, &tv);
    bufferevent_enable(bev_, EV_READ | EV_WRITE);
    LOG_INFO("event=connect client=%s session=%llu", client_.ip.c_str(), static_cast<unsigned long long>(id_));
    reply(220, "", cfg_->hostname + " ESMTP");
}

void Session::read_cb(bufferevent*, void* arg) { static_cast<Session*>(arg)->process_input(); }

void Session::write_cb(bufferevent*, void* arg) {
    auto* s = static_cast<Session*>(arg);
    if (s->state_ == State::closing) {
        s->finish();
        return;
    }
    if (s->read_paused_) {
        s->read_paused_ = false;
        bufferevent_enable(s->bev_, EV_READ);
        s->process_input();
    }
}

void Session::event_cb(bufferevent*, short what, void* arg) {
    auto* s = static_cast<Session*>(arg);
    if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) && s->state_ != State::closing) {
        s->close_with(421, "4.4.2", s->cfg_->hostname + " Error: timeout exceeded");
        return;
    }
    s->finish();  // EOF, error, or a client that stopped reading
}

void Session::queue_timeout_cb(int, short, void* arg) {
    auto* s = static_cast<Session*>(arg);
    LOG_WARN("event=queue_timeout client=%s", s->client_.ip.c_str());
    s->on_queue_lost();
}

bool Session::output_full() {
    if (evbuffer_get_length(bufferevent_get_output(bev_)) <= kOutputHigh) return false;
    if (!read_paused_) {
        read_paused_ = true;
        bufferevent_disable(bev_, EV_READ);
    }
    return true;
}

// Pipelining: handle every complete command already buffered, in order; replies collect in the
// output buffer and leave together when the loop returns.
void Session::process_input() {
    evbuffer* in = bufferevent_get_input(bev_);
    while (state_ != State::closing && !output_full()) {
        if (state_ == State::wait_queue) return;
        if (state_ == State::data) {
            read_data();
            if (state_ == State::data) return;
            continue;
        }
        if (state_ == State::bdat) {
            read_bdat();
            if (state_ == State::bdat) return;
            continue;
        }
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
            reply(500, "5.5.2", "Syntax error: bare <LF> received, commands end with <CR><LF>");
            break;
        case FrameKind::too_long:
            reply(500, "5.5.2", "Line too long");
            break;
        }
        if (state_ != State::closing && errors_ >= cfg_->smtpd_error_limit)
            close_with(421, "4.7.0", cfg_->hostname + " Error: too many errors");
    }
}

void Session::handle_line(std::string_view line) {
    Command c = parse_command(line);
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
    if (!bev_ || state_ == State::closing) return;
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
    bufferevent_write(bev_, out.data(), out.size());
    if (code >= 400) {
        errors_++;
        LOG_INFO("event=reject client=%s code=%d enhanced=%s reason=\"%s\"", client_.ip.c_str(), code,
                 *enhanced ? enhanced : "-", log::safe(lines.empty() ? "" : lines.back()).c_str());
    }
}

void Session::close_with(int code, const char* enhanced, const std::string& text) {
    if (state_ == State::closing) return;
    reply(code, enhanced, text);
    state_ = State::closing;
    abort_body();
    evtimer_del(queue_timer_);
    bufferevent_disable(bev_, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(bev_)) == 0) finish();
}

void Session::finish() {
    if (!bev_) return;
    abort_body();
    evtimer_del(queue_timer_);
    if (pending_ != Pending::none)
        LOG_WARN("event=disconnect_while_waiting client=%s pending=%s", client_.ip.c_str(),
                 pending_ == Pending::commit ? "commit" : "body_open");
    bufferevent_setcb(bev_, nullptr, nullptr, nullptr, nullptr);
    bufferevent_disable(bev_, EV_READ | EV_WRITE);
    bufferevent_free(bev_);
    bev_ = nullptr;
    state_ = State::closing;
    LOG_INFO("event=disconnect client=%s session=%llu messages=%llu errors=%llu", client_.ip.c_str(),
             static_cast<unsigned long long>(id_), static_cast<unsigned long long>(messages_),
             static_cast<unsigned long long>(errors_));
    host_.session_done(id_);
}

void Session::wait_queue(Pending what, std::optional<uint64_t> reqid) {
    pending_ = what;
    if (!reqid) {
        LOG_WARN("event=queue_unavailable client=%s", client_.ip.c_str());
        queue_failed(451, "4.3.0", "Queue unavailable, try again later");
        return;
    }
    pending_reqid_ = *reqid;
    state_ = State::wait_queue;
    timeval tv{static_cast<time_t>(std::max<uint64_t>(cfg_->smtpd_timeout, 10)), 0};
    evtimer_add(queue_timer_, &tv);
}

bool Session::waiting_for(uint64_t reqid, Pending what) const {
    if (state_ != State::wait_queue || reqid != pending_reqid_) return false;
    if (what == Pending::commit) return pending_ == Pending::commit;
    return pending_ == Pending::open_data || pending_ == Pending::open_bdat;
}

void Session::done_waiting() {
    pending_ = Pending::none;
    pending_reqid_ = 0;
    evtimer_del(queue_timer_);
}

bool Session::in_transaction_io() const {
    return state_ == State::data || state_ == State::bdat || state_ == State::wait_queue ||
           (txn_ && txn_->body);
}

void Session::shutdown() {
    stopping_ = true;
    if (state_ == State::closing) return;
    if (!in_transaction_io()) close_with(421, "4.3.2", cfg_->hostname + " Service shutting down");
}

}  // namespace mta::smtpd
