// One outbound SMTP connection on a libevent bufferevent: connect, greeting, EHLO/HELO, opportunistic
// STARTTLS, then any number of transactions; parks idle in the connection cache between them.
// Trusts nothing from the server: replies go through the bounded parser, text is sanitized.
#pragma once
#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "common/event_ptr.h"
#include "smtp-client/smtp_body.h"
#include "smtp-client/smtp_dane.h"
#include "smtp-client/smtp_job.h"
#include "smtp-client/smtp_reply.h"
#include "smtp-client/smtp_targets.h"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace mta::smtp {

// Phase timeouts in seconds. Postfix allows 300 s for the greeting; we give up sooner and try the next
// address instead, but allow the full 300 s for the reply to the final dot (servers scan the message then).
inline constexpr int kConnectTimeout = 30;
inline constexpr int kGreetingTimeout = 60;
inline constexpr int kCommandTimeout = 120;   // EHLO, STARTTLS, MAIL, RCPT, DATA, RSET replies
inline constexpr int kBodyStallTimeout = 180; // no progress writing the body
inline constexpr int kDotTimeout = 300;       // reply to the final "."
inline constexpr int kQuitTimeout = 5;
inline constexpr std::size_t kBodyChunk = 64 * 1024;
inline constexpr std::size_t kBodyHighWater = 256 * 1024;  // stop reading the body past this many bytes queued

struct SessionSettings {
    std::string helo_name;
    std::string bind_address;  // the local address to connect from, of the target's family ("" = any)
    int connect_timeout = kConnectTimeout;    // smtp_connect_timeout
    int greeting_timeout = kGreetingTimeout;  // smtp_helo_timeout
    SSL_CTX* tls = nullptr;  // no TLS at all when null
    // none: never STARTTLS; may: STARTTLS when offered; encrypt: TLS required (unverified);
    // dane: TLS required and verified against `tlsa` (names: MX host, then the next-hop domain);
    // mta_sts: TLS required and the certificate verified against the CA store for names[0] (the MX host).
    TlsLevel level = TlsLevel::may;
    bool sts_testing = false;  // MTA-STS testing mode: check as mta_sts would, but only log failures
    std::vector<Tlsa> tlsa;
    std::vector<std::string> names;
    bool lmtp = false;  // RFC 2033: LHLO, and one reply per accepted recipient after the dot
};

struct TxOutcome {
    bool usable = false;           // connection may carry another transaction
    bool nothing_received = false; // no reply at all arrived (a dead cached connection): safe to retry
    std::string error;             // set when the connection failed during the transaction
};

class Session {
public:
    using OpenDone = std::function<void(bool ok, std::string err)>;
    using TxDone = std::function<void(TxOutcome)>;

    Session(event_base* base, Target target, SessionSettings settings);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    // Connect and get to the point where MAIL may be sent. `done` runs once (possibly never if the
    // Session is destroyed first); the Session may be destroyed inside it.
    void open(OpenDone done);
    // Send one transaction for every undecided recipient of `job`; fills their status and text.
    void transact(Job& job, TxDone done);
    // Idle in the cache: close after `idle_seconds` (sending QUIT) or when the server hangs up;
    // `on_dead` runs then (the Session may be destroyed inside it).
    void park(int idle_seconds, std::function<void()> on_dead);
    // Polite close: QUIT, wait briefly for the reply, then `on_dead`.
    void quit(std::function<void()> on_dead);
    bool idle() const { return phase_ == Phase::idle; }
    bool parked() const { return phase_ == Phase::parked; }

    const Target& target() const { return target_; }
    const Extensions& ext() const { return ext_; }
    bool tls_active() const { return tls_active_; }
    bool tls_verified() const { return tls_verified_; }  // by DANE or MTA-STS (WebPKI)
    // Why a policy (DANE, MTA-STS enforce or testing) was not met, as an RFC 8460 result type
    // ("starttls-not-supported", "validation-failure", "certificate-expired", ...), with its detail;
    // "" when it was met or nothing was checked.
    const std::string& tls_failure() const { return tls_failure_; }
    const std::string& tls_failure_detail() const { return tls_failure_detail_; }
    const SessionSettings& settings() const { return settings_; }
    const std::string& local_ip() const { return local_ip_; }  // once connected
    // The open failed in the TLS handshake of an opportunistic ("may") session: worth one retry of the
    // same address without TLS, as Postfix does (an attacker able to break the handshake could as well
    // have hidden STARTTLS).
    bool may_retry_plain() const { return tls_handshake_failed_ && settings_.level == TlsLevel::may; }
    unsigned transactions() const { return transactions_; }

private:
    enum class Phase { none, connecting, greeting, ehlo, helo, starttls, handshake, idle, mail, rcpt, data,
                       body, bdat, dot, rset, parked, quit, dead };
    enum class Expect { mail, rcpt, data, bdat, dot, rset, discard };

    static void on_read_cb(bufferevent*, void*);
    static void on_write_cb(bufferevent*, void*);
    static void on_event_cb(bufferevent*, short, void*);
    static void on_timer_cb(int, short, void*);

    void setup_callbacks();
    void arm(int seconds);
    void write(std::string_view s);
    void handle_input();
    void handle_reply(const Reply& r);
    void fail(const std::string& why);
    const char* phase_name() const;
    std::string said(const Reply& r) const;

    // Opening (smtp_session.cpp).
    void on_greeting(const Reply& r);
    void on_ehlo(const Reply& r);
    void on_helo(const Reply& r);
    void on_starttls(const Reply& r);
    void handshake_done();
    bool tls_required() const {
        return settings_.level == TlsLevel::encrypt || settings_.level == TlsLevel::dane ||
               settings_.level == TlsLevel::mta_sts;
    }
    bool webpki_check() const { return settings_.level == TlsLevel::mta_sts || settings_.sts_testing; }
    bool webpki_verified(SSL* ssl, std::string& detail) const;
    void policy_failed(const char* result_type, const std::string& detail);  // the first one counts
    void start_tls();
    void opened();
    void open_failed(const std::string& why);

    // Transaction (smtp_transaction.cpp).
    std::string mail_command() const;
    std::string rcpt_command(const Recipient& r) const;
    void send_next_rcpt();
    void after_rcpts();
    void on_tx_reply(const Reply& r);
    void on_mail(const Reply& r);
    void on_rcpt(const Reply& r);
    void on_data(const Reply& r);
    void on_dot(const Reply& r);
    bool read_body(ssize_t& n);
    void pump_body();
    void send_bdat();
    void on_bdat(const Reply& r);
    void send_rset();
    std::size_t unsent() const;  // bytes written but not yet handed to the kernel (TLS: both layers)
    void tx_finished(bool usable);
    void tx_failed(const std::string& why);

    event_base* base_;
    Target target_;
    SessionSettings settings_;
    BufferEventPtr bev_;  // frees the socket (and, with TLS, the SSL and the plaintext bufferevent)
    EventPtr timer_;
    Phase phase_ = Phase::none;
    Extensions ext_;
    bool tls_active_ = false;
    bool tls_verified_ = false;
    std::string tls_failure_, tls_failure_detail_, local_ip_;
    bool tls_handshake_failed_ = false;
    bool esmtp_ = false;
    int connect_errno_ = 0;
    bool bind_failed_ = false;  // smtp_bind_address could not be bound (connect_errno_ says why)
    unsigned transactions_ = 0;

    OpenDone open_done_;
    TxDone tx_done_;
    std::function<void()> on_dead_;

    // Current transaction.
    Job* job_ = nullptr;
    std::vector<Recipient*> sent_;      // recipients whose RCPT went out, in order
    std::deque<Expect> expect_;         // replies still due, in order (PIPELINING sends ahead)
    std::size_t next_rcpt_ = 0;         // index into open recipients for non-pipelined sending
    std::vector<Recipient*> todo_;      // undecided recipients at transaction start
    std::vector<Recipient*> accepted_;
    std::size_t lmtp_replies_ = 0;      // LMTP: per-recipient replies after the dot received so far
    bool mail_ok_ = false;
    bool got_reply_ = false;
    BodyEncoder encoder_;
    bool bdat_ = false;                 // CHUNKING offered and SMTP (not LMTP): the body goes as BDAT chunks
    BdatEncoder bdat_enc_;
    uint64_t body_off_ = 0;
    std::string scratch_;

    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace mta::smtp
