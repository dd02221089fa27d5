// Recipient acceptance policy (relay control) and the Received: trace header. Pure functions:
// the decision depends only on the parsed address, the configuration and what we know of the client.
#pragma once
#include <cstdint>
#include <ctime>
#include <string>
#include <vector>

#include "common/address.h"
#include "common/alias_expand.h"
#include "common/config.h"
#include "common/table.h"
#include "common/wire/limits.h"
#include "smtpd/smtpd_command.h"

namespace mta::smtpd {

struct RcptVerdict {
    Reply reply;        // code 0 = accepted
    bool local = false; // delivered here (local domain or postmaster)
    std::vector<std::string> expanded;  // matched aliases/virtual: queue these instead of the address
    std::string log_detail;             // why expansion failed (451 4.3.0), for the log only
};

// `may_relay`: the client is in mynetworks or authenticated. `recipients` (local_recipients, may be
// null) lists the valid local addresses: a key "local@domain" or "local", lower-cased; Postmaster is
// always valid (RFC 5321 §4.5.1). `maps` (alias_map, virtual_map; may be null): an address they
// expand is valid whatever local_recipients says, and a virtual alias domain is ours (no relay needed)
// but has no other users than its table entries (550 5.1.1 even for relay clients).
RcptVerdict check_recipient(const addr::Mailbox& rcpt, const Config& cfg, bool may_relay,
                            const table::Table* recipients = nullptr, const alias::Maps* maps = nullptr);

// MAIL's free-space check: `free` bytes on the queue's filesystem must hold the declared SIZE on top of
// queue_minfree, and never be under 1.5 x message_size_limit (Postfix's floor: room for one message of
// the largest size and its bounce).
bool spool_has_room(uint64_t free, uint64_t declared_size, uint64_t queue_minfree, uint64_t message_size_limit);

// "0000000000000ABC": the queue id as the client sees it (common/wire's one format).
using wire::format_qid;

struct TraceInfo {
    std::string helo;          // validated EHLO/HELO argument
    std::string client_ip;     // numeric, without brackets
    bool client_ipv6 = false;
    std::string hostname;      // ours
    std::string protocol;      // SMTP, ESMTP[S][A], UTF8SMTP[S][A] (RFC 3848, RFC 6531)
    std::string tls_version;   // e.g. "TLSv1.3"; empty without TLS
    std::string tls_cipher;
    int tls_bits = 0;
    uint64_t msgid = 0;
    std::string single_rcpt;   // "for <...>" only when the message has exactly one recipient
    std::time_t when = 0;
    long gmtoff = 0;
};

// The complete header block, CRLF-terminated, folded over three lines.
std::string format_received(const TraceInfo& t);

}  // namespace mta::smtpd
