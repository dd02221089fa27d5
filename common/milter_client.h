// The MTA side of a milter conversation (mta-smtpd(8) MILTER), over the codec of milter_proto.h: one
// Chain per SMTP session holds one connection per configured milter and drives them in order, one
// command at a time, with the timeouts and milter_default_action of mta.conf. The owner (the session)
// supplies the sockets (mtad connects them), the macro values and the decisions on what a verdict
// means for its client; the chain never blocks and never calls its owner from inside the owner's own
// call: every result arrives from the event loop.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/address.h"
#include "common/config.h"
#include "common/event_ptr.h"
#include "common/fd.h"
#include "common/milter_proto.h"

struct event_base;

namespace mta::milter {

enum class Stage : uint8_t { connect, helo, mail, rcpt, data, unknown, content };
const char* stage_name(Stage s);

// The outcome of one step across the chain.
struct Verdict {
    enum class Kind : uint8_t {
        pass,       // every milter let it through (some may have accepted)
        reject,     // permanent refusal
        tempfail,   // temporary refusal
        discard,    // accept silently and drop the message
        shutdown,   // SMFIR_SHUTDOWN / SMFIR_CONN_FAIL: 421 and close the session
    };
    Kind kind = Kind::pass;
    int code = 0;                     // the SMTP reply for reject/tempfail
    std::string enhanced;             // its enhanced status code
    std::vector<std::string> text;    // its text lines, without code and enhanced code
    std::string milter;               // the milter that decided (its spec); "" for pass
    bool failure = false;             // a broken milter under milter_default_action (for the whole session)
};

// A message's header block as the milters see and change it; the body stays in a file.
struct Header {
    std::string name;
    std::string raw;  // the whole field: "Name:" value, CRLF-terminated continuation lines included
};

class Message {
public:
    // Reads the header block of the message in `fd` (from offset 0); the body is the rest.
    bool load(int fd, std::string& err);
    std::vector<Header> headers;
    // Writes the message, as changed, into a new sealable memfd.
    UniqueFd write(std::string& err) const;
    bool changed() const { return changed_; }
    int body_fd() const { return body_fd_; }

    // Modifications, in Sendmail's and Postfix's meaning (see milter_proto.h Reply).
    void add_header(const std::string& name, const std::string& value, bool leadspc);
    void insert_header(uint32_t index, const std::string& name, const std::string& value, bool leadspc);
    void change_header(uint32_t index, const std::string& name, const std::string& value, bool leadspc);
    // The new body arrives in pieces; finish_body normalises the line ends (CRLF) into a memfd.
    bool append_body(std::string_view piece, uint64_t limit);
    bool finish_body(std::string& err);
    void drop_new_body() { new_body_.reset(); }

    uint64_t body_offset() const { return body_off_; }
    uint64_t body_length() const { return body_len_; }

private:
    int body_fd_ = -1;          // the original message's fd (not owned), or replaced_
    uint64_t body_off_ = 0, body_len_ = 0;
    bool separator_ = false;    // the original had an empty line before the body
    bool changed_ = false;
    std::optional<std::string> new_body_;  // REPLBODY pieces of the current milter
    UniqueFd replaced_;
};

// Envelope changes and the quarantine asked for at the end of a message, in the order they came.
struct Changes {
    std::optional<std::pair<std::string, std::string>> sender;          // address (no <>), ESMTP args
    std::vector<std::pair<std::string, std::string>> add_rcpts;         // address, ESMTP args
    std::vector<std::string> del_rcpts;
    std::string quarantine;     // "" = none; "milter <spec>: <reason>" as clean text of at most kMaxHoldReason
    unsigned header_edits = 0;
    bool body_replaced = false;

    bool any() const;             // anything beyond the quarantine
    std::string summary() const;  // "headers=N body=kept|replaced sender=... rcpts_added=N rcpts_deleted=N"
};

// An address a milter sent (CHGFROM, ADDRCPT, DELRCPT: "<a@b>" or a@b); nullopt when it is none. The null
// sender <> only where `sender`.
std::optional<addr::Mailbox> parse_address(const std::string& text, bool sender);

class Owner {
public:
    // Asks for a socket to milter `index` of the chain's list; the answer goes to
    // Chain::socket_ready or Chain::socket_failed (never from inside this call).
    virtual void milter_socket(std::size_t index) = 0;
    // A macro's value now, or nullopt when it has none (then it is not sent).
    virtual std::optional<std::string> milter_macro(std::string_view name) const = 0;
    // The step started by the last call has its verdict.
    virtual void milter_done(Stage stage, const Verdict& v) = 0;
    // " client=... qid=..." for log lines.
    virtual std::string milter_log_context() const = 0;

protected:
    ~Owner() = default;
};

struct ConnectInfo {
    std::string hostname;   // the client's name, or "unknown"
    char family = SMFIA_UNKNOWN;
    uint16_t port = 0;
    std::string address;    // numeric
};

class Chain {
public:
    // `list`: smtpd_milters or non_smtpd_milters of `cfg`.
    Chain(event_base* base, std::shared_ptr<const Config> cfg, const std::vector<MilterEndpoint>& list, Owner& owner);
    ~Chain();
    Chain(const Chain&) = delete;
    Chain& operator=(const Chain&) = delete;

    // Each step below is answered by Owner::milter_done from the loop. One step at a time.
    void start(ConnectInfo info);                        // connect, negotiate, SMFIC_CONNECT
    void helo(const std::string& name);
    void mail(const std::vector<std::string>& args);     // "<sender>", ESMTP args
    void rcpt(const std::vector<std::string>& args);
    void data();
    void unknown(const std::string& line);
    // The message in `fd` (a memfd the chain may read from offset 0): headers, end of headers, body,
    // end of message, milter by milter; each sees the previous one's changes. Afterwards message()
    // and changes() say what became of it.
    void content(int fd);
    const Message& message() const { return msg_; }
    const Changes& changes() const { return changes_; }

    // The transaction ended without an end of message: SMFIC_ABORT to the milters that saw it.
    void abort();
    // The end: SMFIC_QUIT to every live milter, and their connections closed (also done by the destructor).
    void quit();
    bool in_message() const { return in_message_; }
    bool busy() const { return step_active_; }

    void socket_ready(std::size_t index, UniqueFd fd);
    void socket_failed(std::size_t index, const std::string& why);

private:
    struct Client;
    friend struct Client;

    void begin(Stage stage);
    void next();                    // the current step's next milter, or the end of the step
    void finish(Verdict v);
    void on_reply(Client& c, const Reply& r);
    void broken(Client& c, const std::string& why);
    bool all_connected() const;
    void connected(Client& c);
    bool content_next(Client& c);
    bool apply_modification(Client& c, const Reply& r);
    std::string macros_for(const Client& c, int list, char command) const;
    uint64_t timeout_for(char command) const;
    static void done_cb(int, short, void* arg);

    event_base* base_;
    std::shared_ptr<const Config> cfg_;
    std::vector<MilterEndpoint> list_;
    Owner& owner_;
    std::vector<std::unique_ptr<Client>> clients_;
    ConnectInfo info_;
    Stage stage_ = Stage::connect;
    bool step_active_ = false;
    std::size_t cursor_ = 0;        // the milter the current step is at
    std::vector<std::string> args_; // the current envelope command's arguments
    std::string line_;              // helo name / unknown line
    bool in_message_ = false;
    bool discarded_ = false;        // a milter discarded this message: the rest of it goes to none
    Verdict result_;
    std::optional<Verdict> failed_;  // a broken milter under tempfail/reject: every later step gets it
    EventPtr done_ev_;
    // content
    Message msg_;
    Changes changes_;
    int content_fd_ = -1;
};

}  // namespace mta::milter
