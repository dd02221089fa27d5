// The IPC vocabulary between mtad and its roles: message types and field tags.
// Every link starts with HELLO both ways; the receiver validates every field it uses.
#pragma once
#include <cstdint>

namespace mta::ipc {

inline constexpr uint16_t kProtocolVersion = 1;

enum class Type : uint16_t {
    hello = 1,         // version, role
    config = 2,        // master -> child: config_text (the parsed file's text, re-parsed by the child)
    peer = 3,          // master -> child: role, instance, fd = new socketpair end to that peer
    listen = 4,        // master -> smtpd: listen_kind ("smtp"|"submission"|"smtps"), fd = listening socket
    stop = 5,          // master -> child: finish current work and exit
    loglevel = 6,      // master -> child: text = debug|info|warn|error
    resolve_request = 7,   // anyone -> resolver (also master for mtadns): name, qtype
    resolve_reply = 8,     // rcode, dnssec, record*, text
    admin_request = 9,     // master -> queue: text (the command line after "queue "), uid, privileged (u64 0/1)
    admin_reply = 10,      // queue -> master: text (a chunk of the answer), status (u64: 1 = more follows, 0 = last);
                           // also master -> metrics: the rendered metrics, in chunks
    admin_more = 13,       // master -> queue: status (u64: 1 = the tool has read what came, send the next chunk of
                           // a streamed answer; 0 = the tool went away, drop the rest)
    stats_request = 11,    // master -> any role: report your metrics; metrics -> master: render everyone's
    stats_reply = 12,      // role -> master: (metric_name, metric_labels, metric_value)* (common/metrics.h)

    body_open = 20,        // smtpd -> queue: ask for a fresh writable body file
    body_open_ok = 21,     // queue -> smtpd: msgid, fd (O_WRONLY body file)
    fail = 22,             // reply to any request: code (SMTP), enhanced, text
    commit = 23,           // smtpd -> queue: msgid, envelope fields, rcpt groups; body already fsync'd
    commit_ok = 24,        // queue -> smtpd: msgid (the reply to the final dot may now say 250)
    abort = 25,            // smtpd -> queue: msgid; body is thrown away
    spool_probe = 26,      // queue -> smtpd, once per link: fd (O_PATH, a regular file beside the bodies) for
                           // fstatvfs: the free space MAIL checks (never a directory: that would undo the chroot)

    // mta-msgauth (msgauth/): DKIM signing, DKIM/SPF/DMARC verification of one received message.
    msgauth_request = 50,  // smtpd -> msgauth: msgid, client_addr, client_helo, sender, auth_user, msgauth_trusted,
                           // fd (sealed memfd: the message as received, without our Received:)
    msgauth_reply = 51,    // msgauth -> smtpd: msgauth_action, code, enhanced, text, msgauth_prepend,
                           // (msgauth_cut_offset, msgauth_cut_length)* ranges of the message to drop

    deliver = 30,          // queue -> deliverer: msgid, sender, rcpt groups (rcpt_index, rcpt, ...), fd (O_RDONLY body)
    deliver_result = 31,   // deliverer -> queue: msgid, then per recipient: rcpt_index, status, text

    // anvil (master/anvil.h): per-client limits counted by mtad across all smtpd processes.
    // The reqid of anvil_connect names the connection; anvil_disconnect repeats it.
    anvil_connect = 40,    // smtpd -> master: client_addr (numeric), listen_kind; answered by anvil_verdict
    anvil_verdict = 41,    // master -> smtpd: anvil_status, anvil_concurrent, anvil_rate, anvil_auth_failures
    anvil_disconnect = 42, // smtpd -> master: reqid of the connection's anvil_connect; no answer
    anvil_auth_fail = 43,  // smtpd -> master: client_addr; answered by anvil_auth_count
    anvil_auth_count = 44, // master -> smtpd: anvil_auth_failures (this window, this one included)
    milter_connect = 45,   // smtpd -> master: milter_index, text (its spec): connect that milter of smtpd_milters
    milter_socket = 46,    // master -> smtpd: fd (a stream socket, connected or still connecting); or fail
};

enum class Tag : uint16_t {
    version = 1,
    role = 2,
    instance = 3,
    config_text = 4,
    listen_kind = 5,
    text = 6,
    code = 7,
    enhanced = 8,

    msgid = 20,
    sender = 21,
    rcpt = 22,           // starts a recipient group; the per-recipient tags below follow it
    rcpt_notify = 23,    // DSN NOTIFY flags bitmask
    rcpt_orcpt = 24,     // DSN ORCPT as received (xtext-decoded "type;addr")
    rcpt_index = 25,
    status = 26,         // deliver_result: see DeliveryStatus
    size = 27,           // SIZE= declared by the client (0 if none)
    body_type = 28,      // 0 = 7bit, 1 = 8bitmime, 2 = binarymime
    smtputf8 = 29,
    envid = 30,
    ret = 31,            // 0 = default, 1 = FULL, 2 = HDRS
    client_addr = 32,
    client_helo = 33,
    auth_user = 34,
    arrival = 35,        // unix seconds
    nexthop = 36,        // deliver: the destination (domain, or [host]:port)
    requiretls = 37,
    uid = 38,            // admin_request: the admin tool's uid (SO_PEERCRED)
    privileged = 39,     // admin_request: 1 when the tool may change the queue (root or mtad's uid)

    name = 40,
    qtype = 41,
    rcode = 42,
    dnssec = 43,         // see DnssecStatus
    record = 44,

    tls_cert_pem = 70,   // config (optional, master -> smtpd): tls_cert's PEM text, read by the master on reload
    tls_key_pem = 71,    // config (optional): tls_key's PEM text

    tls_level = 80,      // deliver (optional): per-destination TLS level from smtp_tls_policy_map (text)
    dsn_handoff = 81,    // deliver_result (optional, after a delivered recipient's status): accepted by an
                         // SMTP next hop without DSN (1: success DSN says "relayed") or with DSN (2: it reports)

    msgauth_trusted = 100,     // msgauth_request: 1 = mynetworks or authenticated (sign), 0 = verify
    msgauth_action = 101,      // msgauth_reply: see MsgauthAction
    msgauth_prepend = 102,     // msgauth_reply: header fields to prepend, each CRLF-terminated
    msgauth_cut_offset = 103,  // msgauth_reply: starts a cut group: an octet range of the message to drop
    msgauth_cut_length = 104,
    hold_reason = 105,         // commit (optional): queue the message held, for this reason (DMARC quarantine)
    max_per_connection = 106,  // deliver (optional): transactions one connection may carry (destination_policy)
    source_address = 107,      // deliver (optional): connect from this address (a source pool's choice)
    source_helo = 108,         // deliver (optional): the EHLO name that goes with source_address
    tlsrpt = 109,              // deliver_result (optional): TLS-RPT counts of the attempt (bytes)
    tlsrpt_rua = 110,          // deliver_result (with tlsrpt): the policy domain's mailto addresses
    mx_host = 111,             // deliver_result (optional): the recipient domain's most preferred MX host
    metric_name = 112,         // stats_reply: starts a sample
    metric_labels = 113,       // stats_reply: the sample's label set (k="v",...)
    metric_value = 114,        // stats_reply: the sample's value
    milter_index = 115,        // milter_connect: the milter's position in smtpd_milters (0-based)

    anvil_status = 90,         // see AnvilStatus
    anvil_concurrent = 91,     // the client's connections now (the new one included when allowed)
    anvil_rate = 92,           // the client's connections in the current rate window
    anvil_auth_failures = 93,  // the client's failed AUTH attempts in the current window
};

enum class DeliveryStatus : uint64_t { delivered = 0, deferred = 1, bounced = 2 };
enum class DnssecStatus : uint64_t { insecure = 0, secure = 1, bogus = 2 };
// hold: accept, but queue the message held (recipients not delivered until an admin releases them); the
// reply's text is the reason the admin sees.
enum class MsgauthAction : uint64_t { accept = 0, reject = 1, tempfail = 2, hold = 3 };
enum class AnvilStatus : uint64_t { allow = 0, refuse_concurrency = 1, refuse_rate = 2 };

// DSN NOTIFY bits (RFC 3461); zero means "not given" (default: FAILURE, and DELAY at our discretion).
inline constexpr uint64_t kNotifyNever = 1, kNotifySuccess = 2, kNotifyFailure = 4, kNotifyDelay = 8;

}  // namespace mta::ipc
