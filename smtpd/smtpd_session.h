// One inbound SMTP session: an explicit state machine (smtpd_state.h, changed only by enter(); each
// verb is check_<cmd> -> proceed_<cmd>) over a bufferevent. Trusts nothing from the client; trusts the queue's replies only after the server
// validated their shape. All I/O goes through bev_ so STARTTLS can later swap in an SSL filter.
#pragma once
#include <sys/socket.h>

#include <chrono>
#include <functional>
#include <cstdint>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/address.h"
#include "common/config.h"
#include "common/event_ptr.h"
#include "common/fd.h"
#include "common/ipc.h"
#include "common/milter_client.h"
#include "common/table.h"
#include "common/wire/msgauth.h"
#include "smtpd/smtpd_command.h"
#include "smtpd/smtpd_data.h"
#include "smtpd/smtpd_state.h"
#include "smtpd/smtpd_tls.h"

struct bufferevent;
struct event;
struct event_base;

namespace mta::smtpd {

struct ClientInfo;

// What a session needs from its process (implemented by Server).
class SessionHost {
public:
    virtual ~SessionHost() = default;
    // Sends a request to the queue; returns its reqid, or nullopt when there is no queue link.
    virtual std::optional<uint64_t> queue_request(ipc::Message m, uint64_t session_id) = 0;
    // Fire-and-forget (abort). Lost silently when there is no link: the queue reaps orphans.
    virtual void queue_notify(ipc::Message m) = 0;
    // The session has finished; the host frees it later (never inside the session's own call).
    virtual void session_done(uint64_t session_id) = 0;
    virtual std::time_t now() const = 0;
    // Cross-session AUTH failure accounting per client IP (smtpd_client_auth_failure_rate_limit,
    // smtpd_client_event_limit_exceptions exempt): record one failure; and whether the client is over
    // the limit now.
    virtual void auth_failed(const ClientInfo& client) = 0;
    virtual bool auth_blocked(const ClientInfo& client) const = 0;
    // Bytes free for the queue on its filesystem (fstatvfs on the queue's spool_probe); nullopt when
    // unknown (no probe yet): then MAIL does not check, and the commit still answers 452 on ENOSPC.
    virtual std::optional<uint64_t> spool_free() const = 0;
    // Sends a request to mta-msgauth; its reqid, or nullopt when there is no msgauth link.
    virtual std::optional<uint64_t> msgauth_request(ipc::Message m, uint64_t session_id) = 0;
    // Asks mtad for a socket to milter `index` of smtpd_milters; the answer reaches the session's
    // on_milter_socket later (never from inside this call).
    // `spec` is the session's own idea of that milter (mtad refuses a pair its config does not have).
    virtual void milter_socket(uint64_t session_id, std::size_t index, const std::string& spec) = 0;
};

enum class ListenKind { smtp, submission, smtps };
const char* listen_kind_name(ListenKind k);  // "smtp", "submission", "smtps"

// What only root could open (before the chroot): shared by the sessions started while it is current.
struct Resources {
    TlsContext tls;                                          // null: no STARTTLS, no smtps
    std::shared_ptr<const table::Table> auth_users;          // null: no AUTH
    std::shared_ptr<const table::Table> local_recipients;    // null: every valid local part exists
    std::shared_ptr<const table::Table> alias_map;           // null: no aliases
    std::shared_ptr<const table::Table> virtual_map;         // null: no virtual aliases
};

// A socket address's IP in text ("unknown" for another family) and its port (0 then).
std::string numeric_ip(const sockaddr_storage& ss);
uint16_t numeric_port(const sockaddr_storage& ss);

struct ClientInfo {
    sockaddr_storage addr{};
    std::string ip;       // numeric
    bool ipv6 = false;
    ListenKind kind = ListenKind::smtp;
    std::string dnsbl;    // smtpd_dnsbl_zones that list it ("a.example, b.example"); "" = not listed
};

// An open body file from the queue and the write buffer in front of it.
struct BodySink {
    UniqueFd fd;
    uint64_t msgid = 0;
    std::string buf;
    bool failed = false;
    UniqueFd held;  // while mta-msgauth has a say: the message goes into this memfd, not into fd

    void write(std::string_view s);
    void flush();
    bool finish();  // flush, fsync, close; false on any I/O error

    // From now on the message is held in a memfd (smtpd_msgauth.cpp); what was written so far (our
    // Received:) is in the body file already.
    void hold();
    // Flushes and seals the memfd against any change; `copy` is a second descriptor for mta-msgauth.
    bool seal(UniqueFd& copy);
    // Whether cuts (ascending, disjoint: wire::decode checked) lie inside the held message.
    bool cuts_fit(const std::vector<wire::MsgauthCut>& cuts) const;
    // Writes `prepend`, then the held message without the cut ranges, into the body file.
    bool release(std::string_view prepend, const std::vector<wire::MsgauthCut>& cuts);
};

struct Transaction {
    addr::Mailbox sender;
    MailParams params;
    struct Rcpt {
        std::string addr;
        RcptParams params;
    };
    // The commit message to the queue is one IPC datagram: what a recipient adds to it (its rcpt, notify
    // and orcpt fields), and whether `more` such bytes still leave room for the rest of the commit.
    static std::size_t commit_bytes(const Rcpt& r) { return 3 * 6 + 8 + r.addr.size() + r.params.orcpt.size(); }
    bool commit_has_room(std::size_t more) const { return rcpt_bytes + more <= ipc::kMaxMessage - 16 * 1024; }
    std::vector<Rcpt> rcpts;             // after alias expansion: what is queued
    std::size_t client_rcpts = 0;        // accepted RCPT commands (recipient_limit counts these)
    std::string first_rcpt;              // the first one as the client wrote it (Received: for)
    std::size_t rcpt_bytes = 0;          // commit message bytes the recipients need
    std::time_t arrival = 0;
    uint64_t bdat_octets = 0;            // sum of BDAT chunk sizes so far
    std::string hold_reason;             // mta-msgauth or a milter asked to queue it held
    std::string milter_discard;          // the milter that discarded it ("" = none): 250, nothing queued
    bool milters_done = false;           // the milters have had the message (and changed it)
    std::optional<BodySink> body;
    std::unique_ptr<BodyReader> reader;
};

// What the session has learned about its client and its channel: facts, not protocol state (the
// verbs ask the state whether they may run). A base rather than a member, so the code that reads
// them, the queue's commit message among it, keeps the plain names.
struct SessionFacts {
    bool tls_ = false;                // STARTTLS done or smtps: no plaintext is ever read again
    bool esmtp_ = false;              // the last greeting was EHLO
    std::string helo_;                // its argument (Received:, the queue)
    std::string auth_user_;           // non-empty once authenticated
    std::string tls_version_, tls_cipher_;
    int tls_bits_ = 0;
};

class Session final : private SessionFacts, private milter::Owner {
public:
    Session(SessionHost& host, event_base* base, std::shared_ptr<const Config> cfg,
            std::shared_ptr<const Resources> res, uint64_t id, UniqueFd fd, ClientInfo client);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    void start();

    // Queue replies, routed by the server after it validated them.
    // `reqid` must be the request this session is waiting for; stale replies are ignored.
    void on_body_open(uint64_t reqid, uint64_t msgid, UniqueFd fd);
    void on_commit_ok(uint64_t reqid, uint64_t msgid);
    void on_queue_fail(uint64_t reqid, int code, const std::string& enhanced, const std::string& text);
    void on_queue_lost();
    // mta-msgauth's verdict (validated by the server), or its absence (link gone, timeout).
    void on_msgauth_reply(uint64_t reqid, const wire::MsgauthReply& r);
    void on_msgauth_lost(const char* why);
    // mtad's answer to milter_socket (smtpd_milter.cpp).
    void on_milter_socket(std::size_t index, UniqueFd fd);
    void on_milter_socket_failed(std::size_t index, const std::string& why);

    // Master said stop: idle sessions get 421 now, a transaction in flight may finish first.
    void shutdown();
    bool in_transaction_io() const;
    const ClientInfo& client() const { return client_; }
    uint64_t id() const { return id_; }

private:
    using State = SessionState;
    struct MailArgs {
        addr::Mailbox sender;
        MailParams params;
        std::string esmtp;                    // the parameters as the client wrote them (for milters)
    };
    struct RcptArgs {
        std::string addr;                     // as the client wrote it
        std::vector<Transaction::Rcpt> add;   // what the transaction gains (expanded, duplicates dropped)
        std::size_t bytes = 0;                // commit message bytes they need
        std::size_t expanded = 0;             // alias expansion count, 0: none
        std::string esmtp;                    // the parameters as the client wrote them (for milters)
    };
    struct AuthArgs {
        State step = State::auth_plain;       // the first step of the mechanism
        std::string_view initial;             // the initial response, if any
        bool has_initial = false;
    };

    // State and I/O (smtpd_session.cpp)
    void enter(State to);  // the only place that changes state_
    bool ending() const { return state_ == State::closing || state_ == State::closed; }
    static void read_cb(bufferevent*, void*);
    static void write_cb(bufferevent*, void*);
    static void event_cb(bufferevent*, short, void*);
    static void queue_timeout_cb(int, short, void*);
    static void rate_tick_cb(int, short, void*);
    void watch_data_rate();
    void setup_bev();
    void tls_shutdown();
    void discard_unread_input();
    void process_input();
    void process_commands();
    bool output_full();
    void handle_line(std::string_view line);
    void reply(int code, const char* enhanced, const std::string& text);
    void reply(const Reply& r) { reply(r.code, r.enhanced, r.text); }
    void reply_lines(int code, const char* enhanced, const std::vector<std::string>& lines);
    void close_with(int code, const char* enhanced, const std::string& text);
    void finish();
    void wait_queue(State wait, std::optional<uint64_t> reqid);
    void done_waiting();
    bool waiting_for(uint64_t reqid, bool commit) const;

    // Commands: check_<verb> refuses (and replies) or returns what proceed_<verb> applies
    // (smtpd_commands.cpp)
    void dispatch(const Command& c);
    std::optional<std::string> check_helo(const Command& c, bool extended);
    void proceed_helo(std::string name, bool extended);
    std::optional<MailArgs> check_mail(const Command& c);
    bool check_spool_space(uint64_t declared_size);
    void proceed_mail(MailArgs a);
    std::optional<RcptArgs> check_rcpt(const Command& c);
    void proceed_rcpt(RcptArgs a);
    void proceed_rset();
    void reset_transaction();
    bool may_relay() const;

    // STARTTLS and AUTH (smtpd_tls_session.cpp)
    bool check_starttls(const Command& c);
    void proceed_starttls();
    void tls_ready();
    std::optional<AuthArgs> check_auth(const Command& c);
    void proceed_auth(const AuthArgs& a);
    void auth_input(std::string_view line);
    void auth_check(const std::string& user, const std::string& password);
    void auth_fail(int code, const char* enhanced, const std::string& text);
    static void auth_delay_cb(int, short, void*);
    bool auth_offered() const;
    bool check_submission();
    std::string protocol_name() const;

    // Body (smtpd_body.cpp)
    bool check_data(const Command& c);
    void proceed_data();
    std::optional<BdatArgs> check_bdat(const Command& c);
    void proceed_bdat(const BdatArgs& b);
    void discard_chunk(uint64_t size, State after);
    void queue_failed(State waited, int code, const char* enhanced, const std::string& text);
    void resume();
    void open_body(State why);
    void read_data();
    void read_bdat();
    void end_of_chunk();
    bool refuse_body();
    void commit_body();
    static long local_gmtoff(std::time_t when);  // seconds east of UTC (Received:, Date:)
    std::string received_header(std::time_t when, long gmtoff) const;
    ipc::Message commit_message() const;
    void abort_body();

    // mta-msgauth between the end of the body and the commit (smtpd_msgauth.cpp)
    bool msgauth_trusted() const;  // mynetworks or authenticated: sign, else verify
    bool wants_msgauth() const;
    void request_msgauth();
    void end_transaction(int code, const char* enhanced, const std::string& text);

    // Milters (smtpd_milter.cpp): each step waits in wait_milter. Let through, `pass` runs (and moves
    // the state); refused, the session goes to `back`, `refused` cleans up and the client gets the
    // milters' reply.
    void greet();
    void start_milters();
    bool milter_refuses(const Command& c);   // the session is refused (connect step, broken milter)
    void ask_milters(State back, const std::function<void(milter::Chain&)>& ask, std::function<void()> pass,
                     std::function<void()> refused = {});
    void ask_milters_helo(std::string name, bool extended);
    void ask_milters_mail(MailArgs a);
    void ask_milters_rcpt(RcptArgs a);
    void ask_milters_data(bool data);
    void ask_milters_unknown(const std::string& line, const Reply& ours);
    void run_content_milters();
    void content_verdict(const milter::Verdict& v);
    bool apply_milter_changes();
    void milter_reply(const milter::Verdict& v);
    void apply_helo(std::string name, bool extended);
    void open_data(bool data);
    // milter::Owner
    void milter_socket(std::size_t index) override;
    std::optional<std::string> milter_macro(std::string_view name) const override;
    void milter_done(milter::Stage stage, const milter::Verdict& v) override;
    std::string milter_log_context() const override;

    SessionHost& host_;
    event_base* base_;
    std::shared_ptr<const Config> cfg_;
    std::shared_ptr<const Resources> res_;
    uint64_t id_;
    ClientInfo client_;
    BufferEventPtr bev_;
    EventPtr queue_timer_;
    EventPtr auth_timer_;     // delays the reply to a failed AUTH
    EventPtr rate_timer_;     // 1 s tick while body bytes are expected (smtpd_min_data_rate)
    uint64_t rate_bytes_ = 0;         // body bytes read in the current measuring window
    uint64_t rate_seconds_ = 0;       // seconds spent in DATA/BDAT in the current window

    State state_ = State::greeting;   // changed only by enter()
    // The queue request waited for (0: none), and whether it is the commit (else a body_open). Kept
    // apart from state_: a session that closes while waiting still reports what it left behind.
    uint64_t pending_reqid_ = 0;
    bool pending_commit_ = false;
    // I/O conditions, independent of the protocol state.
    bool discarding_ = false;     // framer: dropping the tail of an over-long line
    bool read_paused_ = false;    // client is not reading our replies
    bool peer_eof_ = false;       // client half-closed: answer what it sent, then close
    bool stopping_ = false;       // the master said stop
    std::optional<Transaction> txn_;  // present in mail, rcpt and every body state
    uint64_t bdat_remaining_ = 0;
    uint64_t bdat_chunk_ = 0;
    bool bdat_last_ = false;      // the current chunk is the LAST one
    State after_discard_ = State::ready;  // where bdat_discard returns to
    uint64_t committed_msgid_ = 0; // body handed to the queue, waiting for commit_ok
    uint64_t errors_ = 0;
    uint64_t junk_ = 0;           // commands without progress (smtpd_junk_command_limit)
    uint64_t messages_ = 0;
    std::string auth_login_user_;
    uint64_t auth_failures_ = 0;
    Reply auth_delayed_reply_;        // sent when auth_timer_ fires
    // Metrics: the command a negative reply answers, and when the message's end arrived (its reply's
    // latency is observed when that reply is written).
    const char* stage_ = "connect";
    std::optional<std::chrono::steady_clock::time_point> final_dot_;
    // Milters: the chain (null without smtpd_milters), the step waited for, and what it is about.
    std::unique_ptr<milter::Chain> milters_;
    State milter_back_ = State::ready;
    std::function<void()> milter_pass_, milter_refused_;
    std::optional<milter::Verdict> milter_refusal_;  // every later command but QUIT/NOOP/RSET gets it
    std::string milter_sender_, milter_rcpt_;        // the MAIL/RCPT address being asked about
    std::string auth_mech_;                          // PLAIN or LOGIN once authenticated ({auth_type})
    std::optional<sockaddr_storage> local_addr_;     // {daemon_addr}, {daemon_port} (getsockname)
};

}  // namespace mta::smtpd
