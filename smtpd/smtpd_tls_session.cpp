// STARTTLS (RFC 3207) and AUTH PLAIN/LOGIN (RFC 4954) for a session. Port 25 offers STARTTLS and never
// AUTH; submission needs STARTTLS before AUTH and AUTH before MAIL; smtps is TLS from the first byte.
// Plaintext pipelined behind STARTTLS is discarded (CVE-2011-0411) and the session starts over.
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "common/log.h"
#include "common/metrics.h"
#include "smtpd/smtpd_auth.h"
#include "smtpd/smtpd_session.h"

namespace mta::smtpd {
namespace {

bool iequal(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); i++)
        if ((a[i] | 0x20) != (b[i] | 0x20)) return false;
    return true;
}

// Compared against when the user is unknown, so that unknown and known users cost the same time.
constexpr const char* kDummyHash =
    "$6$Jx2GFJ2xM1h0wS1a$8Bf3i3Iu4tZ6zL6nlJ1m0bQyVv8vQm9bS2Zl8pQ4yKc4g1cJX4y5V1kQ2N3rS1y9wq8rW5tE4u6nP7Q0a2b1c0";

}  // namespace

bool Session::check_starttls(const Command& c) {
    if (!res_->tls || client_.kind == ListenKind::smtps) {
        reply(502, "5.5.1", "Error: command not implemented");
        return false;
    }
    if (tls_) {
        reply(554, "5.5.1", "Error: TLS already active");
        return false;
    }
    if (!c.arg.empty()) {
        reply(501, "5.5.4", "Syntax: STARTTLS");
        return false;
    }
    if (Reply r = verb_refusal(Verb::starttls, state_, esmtp_)) {
        reply(r);
        return false;
    }
    return true;
}

void Session::proceed_starttls() {
    evbuffer* in = bufferevent_get_input(bev_.get());
    if (std::size_t stray = evbuffer_get_length(in)) {
        LOG_WARN("event=starttls_pipelined client=%s bytes=%zu action=discarded", client_.ip.c_str(), stray);
        evbuffer_drain(in, stray);
    }
    reply(220, "2.0.0", "Ready to start TLS");  // still plaintext: queued in front of the handshake
    SSL* ssl = SSL_new(res_->tls.get());
    bufferevent* filter =
        ssl ? bufferevent_openssl_filter_new(base_, bev_.get(), ssl, BUFFEREVENT_SSL_ACCEPTING, tls_bufferevent_options()) : nullptr;
    if (!filter) {
        if (ssl) SSL_free(ssl);
        LOG_ERROR("event=starttls_failed client=%s reason=\"cannot create the TLS filter\"", client_.ip.c_str());
        enter(State::closing);
        finish();
        return;
    }
    (void)bev_.release();  // the filter owns the socket bufferevent now (BEV_OPT_CLOSE_ON_FREE)
    bev_.reset(filter);
    tls_ = true;
    setup_bev();
    // RFC 3207 §4.2: forget everything learned before TLS; the client must say EHLO again.
    abort_body();
    reset_transaction();
    helo_.clear();
    esmtp_ = false;
    enter(State::tls_handshake);
}

// BEV_EVENT_CONNECTED: the handshake (STARTTLS or smtps) is done; commands may be read now.
void Session::tls_ready() {
    SSL* ssl = bufferevent_openssl_get_ssl(bev_.get());
    if (!ssl) return;
    tls_version_ = SSL_get_version(ssl);
    tls_cipher_ = SSL_get_cipher_name(ssl);
    tls_bits_ = SSL_get_cipher_bits(ssl, nullptr);
    metrics::registry().add("mta_smtpd_tls_sessions_total",
                            metrics::labels({{"listener", listen_kind_name(client_.kind)}, {"version", tls_version_}}));
    LOG_INFO("event=tls client=%s version=%s cipher=%s", client_.ip.c_str(), tls_version_.c_str(), tls_cipher_.c_str());
    if (state_ == State::tls_handshake) enter(State::pre_helo);
    process_input();  // a command that came with the client's Finished message is already decrypted
}

bool Session::auth_offered() const {
    return client_.kind != ListenKind::smtp && tls_ && res_->auth_users && auth_user_.empty();
}

// Submission and smtps: MAIL needs AUTH, and on submission AUTH needs STARTTLS first.
bool Session::check_submission() {
    if (client_.kind == ListenKind::smtp || !auth_user_.empty()) return true;
    if (!tls_) reply(530, "5.7.0", "Must issue a STARTTLS command first");
    else reply(530, "5.7.0", "Authentication required");
    return false;
}

std::optional<Session::AuthArgs> Session::check_auth(const Command& c) {
    if (client_.kind != ListenKind::smtp && res_->auth_users && !tls_) {
        reply(530, "5.7.0", "Must issue a STARTTLS command first");
        return std::nullopt;
    }
    if (!auth_user_.empty()) {
        reply(503, "5.5.1", "Error: already authenticated");
        return std::nullopt;
    }
    if (!auth_offered()) {
        reply(503, "5.5.1", "Error: authentication not enabled");
        return std::nullopt;
    }
    if (host_.auth_blocked(client_)) {  // smtpd_client_auth_failure_rate_limit, across sessions
        close_with(421, "4.7.0", cfg_->hostname + " Error: too many authentication failures from your address");
        return std::nullopt;
    }
    if (Reply r = verb_refusal(Verb::auth, state_, esmtp_)) {
        reply(r);
        return std::nullopt;
    }
    std::string_view arg = c.arg;
    std::size_t sp = arg.find(' ');
    std::string_view mech = arg.substr(0, sp);
    AuthArgs a;
    a.has_initial = sp != std::string_view::npos;
    if (a.has_initial) a.initial = arg.substr(sp + 1);
    if (mech.empty()) {
        reply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
        return std::nullopt;
    }
    if (iequal(mech, "PLAIN")) a.step = State::auth_plain;
    else if (iequal(mech, "LOGIN")) a.step = State::auth_login_user;
    else {
        reply(504, "5.5.4", "Error: unsupported authentication mechanism");
        return std::nullopt;
    }
    return a;
}

void Session::proceed_auth(const AuthArgs& a) {
    auth_mech_ = a.step == State::auth_plain ? "PLAIN" : "LOGIN";
    enter(a.step);
    if (a.has_initial) {
        auth_input(a.initial == "=" ? std::string_view() : a.initial);  // "=": an empty initial response
        return;
    }
    reply(334, "", a.step == State::auth_plain ? "" : base64_encode("Username:"));
}

// One SASL response line, in one of the auth_* states; every outcome leaves that state.
void Session::auth_input(std::string_view line) {
    State step = state_;
    if (line == "*") {
        auth_fail(501, "5.7.0", "Authentication aborted");
        return;
    }
    auto decoded = base64_decode(line);
    if (!decoded) {
        auth_fail(501, "5.5.2", "Error: cannot decode the response");
        return;
    }
    switch (step) {
    case State::auth_plain: {
        auto cred = parse_plain(*decoded);
        if (!cred) auth_fail(501, "5.5.2", "Error: malformed PLAIN response");
        else auth_check(cred->user, cred->password);
        break;
    }
    case State::auth_login_user:
        if (!valid_login_value(*decoded)) {
            auth_fail(501, "5.5.2", "Error: malformed user name");
            break;
        }
        auth_login_user_ = *decoded;
        enter(State::auth_login_password);
        reply(334, "", base64_encode("Password:"));
        break;
    case State::auth_login_password:
        if (!valid_login_value(*decoded)) auth_fail(501, "5.5.2", "Error: malformed password");
        else auth_check(auth_login_user_, *decoded);
        auth_login_user_.clear();
        break;
    default:
        break;
    }
}

void Session::auth_check(const std::string& user, const std::string& password) {
    auto hash = res_->auth_users->lookup(user);
    bool ok = table::verify_password(password, hash ? *hash : kDummyHash) && hash;
    if (!ok) {
        LOG_INFO("event=auth_failed client=%s user=\"%s\"", client_.ip.c_str(), log::safe(user).c_str());
        auth_fail(535, "5.7.8", "Error: authentication failed");
        return;
    }
    auth_user_ = user;
    enter(State::ready);
    LOG_INFO("event=auth client=%s user=\"%s\"", client_.ip.c_str(), log::safe(user).c_str());
    reply(235, "2.7.0", "Authentication successful");
}

// Failures answer after smtpd_auth_failure_delay with the session paused, and past
// smtpd_auth_failure_limit the session ends: password guessing costs the guesser time.
void Session::auth_fail(int code, const char* enhanced, const std::string& text) {
    auth_failures_++;
    const char* mech = state_ == State::auth_plain ? "PLAIN" : state_ == State::auth_login_user || state_ == State::auth_login_password ? "LOGIN" : "other";
    metrics::registry().add("mta_smtpd_auth_failures_total", metrics::labels({{"mechanism", mech}}));
    host_.auth_failed(client_);
    auth_delayed_reply_ = Reply{code, enhanced, text};
    enter(State::auth_delay);
    timeval tv{static_cast<time_t>(cfg_->smtpd_auth_failure_delay), 0};
    evtimer_add(auth_timer_.get(), &tv);
}

void Session::auth_delay_cb(int, short, void* arg) {
    auto* s = static_cast<Session*>(arg);
    if (s->state_ != State::auth_delay || !s->bev_) return;
    s->enter(State::ready);
    const Reply& r = s->auth_delayed_reply_;
    s->reply(r.code, r.enhanced, r.text);
    if (s->auth_failures_ >= s->cfg_->smtpd_auth_failure_limit || s->host_.auth_blocked(s->client_)) {
        s->close_with(421, "4.7.0", s->cfg_->hostname + " Error: too many authentication failures");
        return;
    }
    s->resume();
}

std::string Session::protocol_name() const {
    if (!esmtp_) return "SMTP";
    std::string p = txn_ && txn_->params.smtputf8 ? "UTF8SMTP" : "ESMTP";
    if (tls_) p += "S";
    if (!auth_user_.empty()) p += "A";
    return p;
}

}  // namespace mta::smtpd
