// One `deliver` request as the SMTP client works on it, plus strict decoding of the queue's message
// and encoding of the `deliver_result`. The queue is more privileged, but we still check everything.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/ipc.h"
#include "common/wire/wire.h"

namespace mta::smtp {


struct Recipient {
    uint64_t index = 0;    // the queue's recipient index (at most wire::kMaxRcptIndex)
    std::string addr;
    uint64_t notify = 0;  // ipc::kNotify* bits, 0 = not given
    std::string orcpt;    // "type;address", decoded; "" = not given (sent only if it has the ';')
    bool final = false;   // status decided
    ipc::DeliveryStatus status = ipc::DeliveryStatus::deferred;
    std::string text;
    uint8_t handoff = 0;  // delivered over SMTP: 1 = to a next hop without DSN, 2 = with DSN (ipc::Tag::dsn_handoff)
};

struct Job {
    uint64_t msgid = 0;
    std::string sender;   // "" = null sender
    std::string nexthop;
    uint64_t size = 0;
    uint64_t body_type = 0;  // 0 7bit, 1 8bitmime, 2 binarymime
    bool smtputf8 = false;
    std::string envid;
    uint64_t ret = 0;        // 0 default, 1 FULL, 2 HDRS
    bool requiretls = false;
    std::string tls_level;   // from the queue's smtp_tls_policy_map lookup; "" = smtp_tls_level
    uint64_t max_per_connection = 0;  // destination_policy: the connection is closed after this many; 0 = no limit
    // A source pool's choice (queue): connect from this address, to targets of its family only, and
    // greet with source_helo (when set). "" = smtp_bind_address(6) and smtp_helo_name.
    std::string source_address, source_helo;
    // TLS-RPT: this attempt's counts (tlsrpt::Aggregate::encode) and the policy domain's mailto rua
    // ("a@x,b@y"), for the result; both "" when there is nothing to report.
    std::string tlsrpt, tlsrpt_rua;
    std::string mx_host;  // the recipient domain's most preferred MX host, once looked up ("" = none)
    std::vector<Recipient> rcpts;
    UniqueFd body;

    std::string qid() const;  // 16 uppercase hex digits
    // Set status/text of every recipient not decided yet.
    void settle_rest(ipc::DeliveryStatus st, const std::string& text);
    std::size_t open_count() const;
    // `size` from the queue, or the stored body's size when the queue sent none.
    uint64_t message_size() const;
    // True if the envelope needs SMTPUTF8 (non-ASCII sender or recipient).
    bool envelope_utf8() const;
};

// Why the message cannot go to a server with these extensions, as a permanent "5.6.x ..." text, or ""
// when it can: SMTPUTF8 needed by the envelope but not offered (RFC 6531 §3.2: 5.6.7); an 8BITMIME
// body holding 8-bit octets for a server without 8BITMIME (RFC 6152 §3: we do not convert to 7 bit,
// so 5.6.3). `body_8bit` is asked only in that last case (it reads the body).
std::string content_refusal(const Job& job, bool smtputf8, bool eightbitmime, const std::string& host,
                            const std::function<bool()>& body_8bit);

// RFC 1870 §6, as Postfix does: a message larger than the SIZE limit the server announced is not sent;
// a permanent "5.3.4 ..." text, or "" when it fits or no limit (0) was announced.
std::string size_refusal(uint64_t message_size, uint64_t server_limit, const std::string& host);

// wire::decode(Deliver) into a Job. False (with `err`) means a malformed message: the caller treats the
// link as hostile.
bool parse_deliver(ipc::Message& m, Job& out, std::string& err);

// `deliver_result` for the queue, through wire::encode (which keeps it under the IPC size cap).
ipc::Message make_result(const Job& job, uint64_t reqid);

using wire::format_qid;

}  // namespace mta::smtp
