// Session: connection set-up (connect, greeting, EHLO/HELO, STARTTLS), reply dispatch, timeouts,
// parking in the cache and QUIT. Transactions live in smtp_transaction.cpp.
// Remote input only ever reaches parse_reply(); a bad reply fails the session, never the process.
#include "smtp-client/smtp_session.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/metrics.h"

namespace mta::smtp {

Session::Session(event_base* base, Target target, SessionSettings settings)
    : base_(base), target_(std::move(target)), settings_(std::move(settings)) {
    timer_.reset(evtimer_new(base_, &Session::on_timer_cb, this));
}

Session::~Session() { *alive_ = false; }

void Session::setup_callbacks() {
    bufferevent_setcb(bev_.get(), &Session::on_read_cb, &Session::on_write_cb, &Session::on_event_cb, this);
    bufferevent_setwatermark(bev_.get(), EV_WRITE, kBodyHighWater / 2, 0);
    bufferevent_enable(bev_.get(), EV_READ | EV_WRITE);
}

void Session::arm(int seconds) {
    timeval tv = {seconds, 0};
    evtimer_add(timer_.get(), &tv);
}

void Session::write(std::string_view s) {
    if (bev_) bufferevent_write(bev_.get(), s.data(), s.size());
}

void Session::open(OpenDone done) {
    open_done_ = std::move(done);
    phase_ = Phase::connecting;
    int fd = -1;
    if (!settings_.bind_address.empty()) {
        // smtp_bind_address(6): our own socket, bound to the source address before the connect.
        sockaddr_storage src{};
        socklen_t len = 0;
        auto* s4 = reinterpret_cast<sockaddr_in*>(&src);
        auto* s6 = reinterpret_cast<sockaddr_in6*>(&src);
        if (target_.sa.ss_family == AF_INET && inet_pton(AF_INET, settings_.bind_address.c_str(), &s4->sin_addr) == 1) {
            s4->sin_family = AF_INET;
            len = sizeof *s4;
        } else if (target_.sa.ss_family == AF_INET6 &&
                   inet_pton(AF_INET6, settings_.bind_address.c_str(), &s6->sin6_addr) == 1) {
            s6->sin6_family = AF_INET6;
            len = sizeof *s6;
        }
        fd = len ? socket(target_.sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) : -1;
        if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&src), len) != 0) {
            connect_errno_ = len ? errno : EAFNOSUPPORT;
            bind_failed_ = true;
            if (fd >= 0) ::close(fd);
            phase_ = Phase::dead;
            arm(0);
            return;
        }
    }
    bev_.reset(bufferevent_socket_new(base_, fd, BEV_OPT_CLOSE_ON_FREE));
    if (!bev_) {
        connect_errno_ = errno;
        if (fd >= 0) ::close(fd);
        phase_ = Phase::dead;  // reported from the timer so `done` never runs inside open()
        arm(0);
        return;
    }
    setup_callbacks();
    arm(settings_.connect_timeout);
    if (bufferevent_socket_connect(bev_.get(), reinterpret_cast<sockaddr*>(&target_.sa), int(target_.salen)) < 0) {
        // Immediate failure (e.g. no route): report it asynchronously as well.
        connect_errno_ = errno;
        phase_ = Phase::dead;
        arm(0);
    }
}

const char* Session::phase_name() const {
    switch (phase_) {
    case Phase::connecting: return "connecting";
    case Phase::greeting: return "receiving the initial server greeting";
    case Phase::ehlo: return "performing the EHLO handshake";
    case Phase::helo: return "performing the HELO handshake";
    case Phase::starttls: return "sending STARTTLS";
    case Phase::handshake: return "performing the TLS handshake";
    case Phase::mail: return "sending MAIL FROM";
    case Phase::rcpt: return "sending RCPT TO";
    case Phase::data: return "sending DATA command";
    case Phase::body: return "sending message body";
    case Phase::bdat: return "sending BDAT chunk";
    case Phase::dot: return "sending end of data -- message may be sent more than once";
    case Phase::rset: return "sending RSET";
    case Phase::quit: return "sending QUIT";
    default: return "idle";
    }
}

std::string Session::said(const Reply& r) const { return target_.hostip() + " said: " + r.full(); }

void Session::on_read_cb(bufferevent*, void* arg) { static_cast<Session*>(arg)->handle_input(); }

void Session::on_write_cb(bufferevent*, void* arg) {
    auto* s = static_cast<Session*>(arg);
    if (s->phase_ == Phase::body) s->pump_body();
}

void Session::on_event_cb(bufferevent* bev, short what, void* arg) {
    auto* s = static_cast<Session*>(arg);
    if (what & BEV_EVENT_CONNECTED) {
        if (s->phase_ == Phase::connecting) {
            int one = 1;
            setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            struct sockaddr_storage ss {};
            socklen_t len = sizeof ss;
            char ip[INET6_ADDRSTRLEN] = "";
            if (getsockname(bufferevent_getfd(bev), reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
                const void* a = ss.ss_family == AF_INET6 ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr)
                                                         : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&ss)->sin_addr);
                if (inet_ntop(ss.ss_family, a, ip, sizeof ip)) s->local_ip_ = ip;
            }
            s->phase_ = Phase::greeting;
            s->arm(s->settings_.greeting_timeout);
        } else if (s->phase_ == Phase::handshake) {
            s->handshake_done();
        }
        return;
    }
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))) return;
    if (s->phase_ == Phase::connecting) {
        int e = EVUTIL_SOCKET_ERROR();
        s->fail("connect to " + s->target_.label() + ": " + (e ? strerror(e) : "connection closed"));
    } else if (s->phase_ == Phase::handshake) {
        unsigned long e = bufferevent_get_openssl_error(bev);
        char buf[256] = "handshake failed";
        if (e) ERR_error_string_n(e, buf, sizeof buf);
        s->fail("TLS handshake with " + s->target_.hostip() + " failed: " + buf);
    } else {
        // A TLS 1.3 server may refuse us only after the handshake (e.g. certificate required): say so.
        unsigned long e = s->tls_active_ ? bufferevent_get_openssl_error(bev) : 0;
        char buf[256] = "";
        if (e) ERR_error_string_n(e, buf, sizeof buf);
        s->fail("lost connection with " + s->target_.hostip() + " while " + s->phase_name() + (e ? ": " : "") + buf);
    }
}

void Session::on_timer_cb(int, short, void* arg) {
    auto* s = static_cast<Session*>(arg);
    switch (s->phase_) {
    case Phase::parked:
        s->quit(std::move(s->on_dead_));
        return;
    case Phase::quit:
        s->fail("quit");
        return;
    case Phase::dead:
        // Deferred report of an immediate failure (open) or of a close (quit on a non-idle session).
        if (s->open_done_) {
            int e = s->connect_errno_;
            if (s->bind_failed_)
                s->open_failed("bind to " + s->settings_.bind_address + " (smtp_bind_address) for " + s->target_.label() +
                               ": " + strerror(e));
            else
                s->open_failed("connect to " + s->target_.label() + ": " + (e ? strerror(e) : "failed"));
        } else if (s->on_dead_) {
            auto cb = std::move(s->on_dead_);
            cb();
        }
        return;
    case Phase::connecting:
        s->fail("connect to " + s->target_.label() + ": Connection timed out");
        return;
    default:
        s->fail("conversation with " + s->target_.hostip() + " timed out while " + s->phase_name());
    }
}

void Session::handle_input() {
    std::weak_ptr<bool> alive = alive_;
    while (bev_ && phase_ != Phase::dead) {
        evbuffer* in = bufferevent_get_input(bev_.get());
        std::size_t len = std::min(evbuffer_get_length(in), kMaxReplyBytes);
        if (len == 0) return;
        if (phase_ == Phase::parked || phase_ == Phase::idle || phase_ == Phase::handshake) {
            fail("unexpected data from " + target_.hostip() + " while " + phase_name());
            return;
        }
        auto* p = reinterpret_cast<const char*>(evbuffer_pullup(in, ssize_t(len)));
        Reply r;
        ParseResult res = parse_reply(std::string_view(p, len), r);
        if (res.status == ParseStatus::incomplete) return;
        if (res.status == ParseStatus::error) {
            fail("protocol error from " + target_.hostip() + " while " + phase_name() + ": " + res.error);
            return;
        }
        evbuffer_drain(in, res.consumed);
        handle_reply(r);
        if (!alive.lock()) return;
    }
}

void Session::handle_reply(const Reply& r) {
    switch (phase_) {
    case Phase::greeting: on_greeting(r); return;
    case Phase::ehlo: on_ehlo(r); return;
    case Phase::helo: on_helo(r); return;
    case Phase::starttls: on_starttls(r); return;
    case Phase::quit: {
        phase_ = Phase::dead;
        event_del(timer_.get());
        auto cb = std::move(on_dead_);
        if (cb) cb();
        return;
    }
    default: on_tx_reply(r); return;
    }
}

void Session::fail(const std::string& why) {
    Phase p = phase_;
    if (p == Phase::handshake) tls_handshake_failed_ = true;
    phase_ = Phase::dead;
    event_del(timer_.get());
    if (bev_) bufferevent_disable(bev_.get(), EV_READ | EV_WRITE);
    switch (p) {
    case Phase::connecting: case Phase::greeting: case Phase::ehlo: case Phase::helo:
    case Phase::starttls: case Phase::handshake:
        open_failed(why);
        return;
    case Phase::mail: case Phase::rcpt: case Phase::data: case Phase::body: case Phase::bdat: case Phase::dot:
    case Phase::rset:
        tx_failed(why);
        return;
    default: {
        auto cb = std::move(on_dead_);
        if (cb) cb();
    }
    }
}

void Session::on_greeting(const Reply& r) {
    if (r.klass() != 2) {
        write("QUIT\r\n");
        fail("host " + target_.hostip() + " refused to talk to me: " + r.full());
        return;
    }
    phase_ = Phase::ehlo;
    arm(kCommandTimeout);
    metrics::registry().add("mta_smtp_sessions_total", metrics::labels({{"transport", settings_.lmtp ? "lmtp" : "smtp"}}));
    write(std::string(settings_.lmtp ? "LHLO " : "EHLO ") + settings_.helo_name + "\r\n");
}

void Session::on_ehlo(const Reply& r) {
    if (r.klass() == 2) {
        ext_ = parse_ehlo(r);
        esmtp_ = true;
        if (!tls_active_ && settings_.tls && ext_.starttls && settings_.level != TlsLevel::none) {
            phase_ = Phase::starttls;
            arm(kCommandTimeout);
            write("STARTTLS\r\n");
            return;
        }
        if (!tls_active_ && settings_.sts_testing)
            LOG_WARN("event=mta_sts_failure relay=%s mode=testing reason=\"STARTTLS not offered\"", target_.label().c_str());
        if (!tls_active_ && (settings_.sts_testing || settings_.level == TlsLevel::dane || settings_.level == TlsLevel::mta_sts))
            policy_failed("starttls-not-supported", "STARTTLS not offered");
        if (!tls_active_ && tls_required()) {
            write("QUIT\r\n");
            fail("4.7.4 TLS is required, but was not offered by host " + target_.hostip());
            return;
        }
        opened();
        return;
    }
    if (r.klass() == 5 && !tls_active_ && !tls_required() && !settings_.lmtp) {
        phase_ = Phase::helo;
        arm(kCommandTimeout);
        write("HELO " + settings_.helo_name + "\r\n");
        return;
    }
    fail(said(r) + (settings_.lmtp ? " (in reply to LHLO command)" : " (in reply to EHLO command)"));
}

void Session::on_helo(const Reply& r) {
    if (r.klass() != 2) {
        fail(said(r) + " (in reply to HELO command)");
        return;
    }
    ext_ = Extensions{};
    esmtp_ = false;
    opened();
}

void Session::on_starttls(const Reply& r) {
    if (r.code != 220 && tls_required()) {
        policy_failed("starttls-not-supported", "STARTTLS refused: " + r.summary());
        write("QUIT\r\n");
        fail("4.7.4 TLS is required, but host " + target_.hostip() + " refused STARTTLS: " + r.summary());
        return;
    }
    if (r.code != 220) {
        // Opportunistic TLS: a refused STARTTLS command means plaintext, as at level "may".
        LOG_INFO("event=starttls_refused relay=%s reply=\"%s\"", target_.label().c_str(), log::safe(r.summary()).c_str());
        opened();
        return;
    }
    // Bytes already buffered after the 220 were sent in plaintext and would be read as if they came
    // through TLS (CVE-2011-0411 style injection): refuse the connection.
    if (evbuffer_get_length(bufferevent_get_input(bev_.get())) != 0) {
        fail("plaintext data from " + target_.hostip() + " after STARTTLS reply (injection attempt)");
        return;
    }
    start_tls();
}

void Session::start_tls() {
    SSL* ssl = SSL_new(settings_.tls);
    if (!ssl) {
        fail("TLS setup failed for " + target_.hostip());
        return;
    }
    if (!is_ip_literal(target_.host)) SSL_set_tlsext_host_name(ssl, target_.host.c_str());
    std::string err;
    if (webpki_check() && !settings_.names.empty()) {
        // RFC 8461 §4.1: the certificate must be valid for the MX host name; checked after the handshake.
        SSL_set1_host(ssl, settings_.names[0].c_str());
        SSL_set_verify(ssl, SSL_VERIFY_NONE, nullptr);
    }
    if (settings_.level == TlsLevel::dane && !dane_attach(ssl, settings_.names, settings_.tlsa, err)) {
        SSL_free(ssl);
        fail("4.7.5 DANE set-up for " + target_.hostip() + " failed: " + err);
        return;
    }
    phase_ = Phase::handshake;
    bufferevent* tb = bufferevent_openssl_filter_new(base_, bev_.get(), ssl, BUFFEREVENT_SSL_CONNECTING,
                                                     tls_bufferevent_options());
    if (!tb) {
        SSL_free(ssl);
        fail("TLS setup failed for " + target_.hostip());
        return;
    }
    (void)bev_.release();  // the filter owns the plaintext bufferevent now
    bev_.reset(tb);
    bufferevent_openssl_set_allow_dirty_shutdown(bev_.get(), 1);
    setup_callbacks();
    arm(kCommandTimeout);
}

void Session::handshake_done() {
    tls_active_ = true;
    SSL* ssl = bufferevent_openssl_get_ssl(bev_.get());
    std::string detail;
    if (settings_.level == TlsLevel::dane) {
        if (!ssl || !dane_verified(ssl, detail)) {
            // RFC 7672 §2.2: a server whose certificate matches none of its secure TLSA records gets no mail.
            LOG_WARN("event=dane_verify_failed relay=%s reason=\"%s\"", target_.label().c_str(), log::safe(detail).c_str());
            policy_failed("validation-failure", detail);
            fail("4.7.5 DANE verification failed for host " + target_.hostip() + ": " + detail);
            return;
        }
        tls_verified_ = true;
    } else if (webpki_check()) {
        bool ok = ssl && webpki_verified(ssl, detail);
        if (!ok) {
            long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
            policy_failed(v == X509_V_ERR_CERT_HAS_EXPIRED || v == X509_V_ERR_CERT_NOT_YET_VALID ? "certificate-expired"
                          : v == X509_V_ERR_HOSTNAME_MISMATCH                                    ? "certificate-host-mismatch"
                                                                                                 : "certificate-not-trusted",
                          detail);
        }
        if (!ok && settings_.level == TlsLevel::mta_sts) {
            LOG_WARN("event=mta_sts_verify_failed relay=%s reason=\"%s\"", target_.label().c_str(), log::safe(detail).c_str());
            fail("4.7.5 MTA-STS: certificate verification failed for host " + target_.hostip() + ": " + detail);
            return;
        }
        if (!ok)
            LOG_WARN("event=mta_sts_failure relay=%s mode=testing reason=\"certificate: %s\"", target_.label().c_str(),
                     log::safe(detail).c_str());
        tls_verified_ = ok && settings_.level == TlsLevel::mta_sts;
        detail.clear();
    }
    const char* how = !tls_verified_ ? "no" : settings_.level == TlsLevel::dane ? "dane" : "mta-sts";
    metrics::registry().add("mta_smtp_tls_sessions_total", metrics::labels({{"version", ssl ? SSL_get_version(ssl) : "unknown"}}));
    LOG_INFO("event=tls_established relay=%s protocol=%s cipher=%s verified=%s%s%s", target_.label().c_str(),
             ssl ? SSL_get_version(ssl) : "?", ssl ? SSL_get_cipher_name(ssl) : "?", how,
             detail.empty() ? "" : " tlsa=", log::safe(detail).c_str());
    phase_ = Phase::ehlo;
    arm(kCommandTimeout);
    write(std::string(settings_.lmtp ? "LHLO " : "EHLO ") + settings_.helo_name + "\r\n");
}

void Session::policy_failed(const char* result_type, const std::string& detail) {
    if (!tls_failure_.empty()) return;
    tls_failure_ = result_type;
    tls_failure_detail_ = detail;
}

bool Session::webpki_verified(SSL* ssl, std::string& detail) const {
    X509* peer = SSL_get0_peer_certificate(ssl);
    long v = SSL_get_verify_result(ssl);
    if (!peer) detail = "no certificate";
    else if (v != X509_V_OK) detail = X509_verify_cert_error_string(v);
    else return true;
    return false;
}

void Session::opened() {
    phase_ = Phase::idle;
    event_del(timer_.get());
    auto cb = std::move(open_done_);
    cb(true, "");
}

void Session::open_failed(const std::string& why) {
    phase_ = Phase::dead;
    event_del(timer_.get());
    auto cb = std::move(open_done_);
    if (cb) cb(false, why);
}

void Session::park(int idle_seconds, std::function<void()> on_dead) {
    on_dead_ = std::move(on_dead);
    phase_ = Phase::parked;
    arm(idle_seconds);
}

void Session::quit(std::function<void()> on_dead) {
    on_dead_ = std::move(on_dead);
    if (bev_ && (phase_ == Phase::idle || phase_ == Phase::parked)) {
        phase_ = Phase::quit;
        write("QUIT\r\n");
        arm(kQuitTimeout);
        return;
    }
    phase_ = Phase::dead;
    arm(0);
}

}  // namespace mta::smtp
