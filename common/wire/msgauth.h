// The exchange between mta-smtpd and mta-msgauth at the end of DATA/BDAT: msgauth_request (the message
// as a sealed read-only memfd plus the envelope facts) and msgauth_reply (a verdict, header fields to
// prepend, and octet ranges of the message to drop: forged Authentication-Results claiming our id).
// Both sides are unprivileged: the reply is checked as strictly as anything from the network, because
// its header text ends up in the queued message.
#pragma once
#include <fcntl.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/fd.h"
#include "common/ipc.h"

namespace mta::wire {

inline constexpr std::size_t kMaxMsgauthPrepend = 64 * 1024;  // all header fields to prepend together
inline constexpr std::size_t kMaxMsgauthCuts = 1000;          // ranges to drop
inline constexpr std::size_t kMaxMsgauthText = 200;           // reject/tempfail reply text

struct MsgauthRequest {
    uint64_t msgid = 0;         // the queue id, for log lines; never 0
    std::string client_addr;    // numeric
    std::string client_helo;
    std::string sender;         // MAIL FROM, "" = null reverse path
    std::string auth_user;      // "" = not authenticated
    bool trusted = false;       // mynetworks or authenticated: sign; otherwise verify
    UniqueFd body;              // the message as received, sealed against writes
};

struct MsgauthCut {
    uint64_t offset = 0, length = 0;
    bool operator==(const MsgauthCut&) const = default;
};

struct MsgauthReply {
    ipc::MsgauthAction action = ipc::MsgauthAction::accept;
    int code = 0;               // reject: 500..599, tempfail: 400..499, accept and hold: 0
    std::string enhanced;       // "d.d.d" of the code's class, or "" (always "" for accept and hold)
    std::string text;           // clean text: the reply text, or hold's reason (never empty for hold)
    std::string prepend;        // header fields, each ending in CRLF (valid_header_block)
    std::vector<MsgauthCut> cuts;  // ascending, disjoint, non-empty
};

// The seals a msgauth_request's body must carry, or mta-msgauth refuses it: nobody can change the
// message while it is being judged. seal_msgauth_body adds them to a memfd (MFD_ALLOW_SEALING), and
// F_SEAL_SEAL so that nobody can lift them; false with errno on failure.
inline constexpr int kMsgauthBodySeals = F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK;
bool seal_msgauth_body(int fd);
// The reply's cuts (ascending and disjoint, as decode checks) lie within a message of `size` octets.
bool cuts_fit(const std::vector<MsgauthCut>& cuts, uint64_t size);

// Header fields as they may be written into a message: lines ending in CRLF, at most 998 octets each,
// no NUL and no bare CR or LF; a line starting with a blank continues the field above it; every other
// line is "name:" with a name of printable ASCII other than ':'. "" is a valid (empty) block.
bool valid_header_block(std::string_view block);

ipc::Message encode(MsgauthRequest& r, uint64_t reqid);  // moves the fd
bool decode(ipc::Message& m, MsgauthRequest& out, std::string& err);  // moves the fd out
ipc::Message encode(const MsgauthReply& r, uint64_t reqid);
// Strict: the code must fit the action, the prepended block must be valid_header_block, the cuts
// ascending and disjoint (the receiver checks them against the message size it sent).
bool decode(const ipc::Message& m, MsgauthReply& out, std::string& err);

}  // namespace mta::wire
