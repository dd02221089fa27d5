// The reception exchange between mta-smtpd and the queue: body_open / body_open_ok, commit / commit_ok,
// abort, fail, and the spool_probe the queue sends once per link.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/ipc.h"
#include "common/wire/envelope.h"

namespace mta::wire {

struct BodyOpen {};                         // smtpd -> queue: a fresh writable body file, please
struct BodyOpenOk { uint64_t msgid = 0; UniqueFd body; };  // queue -> smtpd: O_WRONLY body file
struct CommitOk { uint64_t msgid = 0; };    // queue -> smtpd: durable, the final dot may say 250
struct Abort { uint64_t msgid = 0; };       // smtpd -> queue: throw the body away
struct SpoolProbe { UniqueFd fd; };         // queue -> smtpd: O_PATH file beside the bodies, for fstatvfs

// The reply to any failed request; shown to SMTP clients, so it is checked on the way in.
struct Fail {
    int code = 451;           // 400..599
    std::string enhanced;     // "d.d.d" with the code's class, "" = none given
    std::string text;         // clean text, at most kMaxFailText
};
inline constexpr std::size_t kMaxFailText = 200;

struct CommitRcpt {
    std::string addr;     // canonical, never empty
    uint64_t notify = 0;  // ipc::kNotify* bits
    std::string orcpt;    // "" = not given
};

struct Commit : Envelope {
    uint64_t msgid = 0;   // from body_open_ok, never 0
    bool has_arrival = false;
    uint64_t arrival = 0; // unix seconds
    std::string client_addr, client_helo, auth_user;
    std::string hold_reason;  // "" = deliver; else queue every recipient held (clean text, kMaxHoldReason)
    std::vector<CommitRcpt> rcpts;
};

ipc::Message encode(const BodyOpen&, uint64_t reqid);
bool decode(const ipc::Message& m, BodyOpen& out, std::string& err);
ipc::Message encode(BodyOpenOk& b, uint64_t reqid);  // moves the fd
bool decode(ipc::Message& m, BodyOpenOk& out, std::string& err);  // moves the fd out
ipc::Message encode(const CommitOk& c, uint64_t reqid);
bool decode(const ipc::Message& m, CommitOk& out, std::string& err);
ipc::Message encode(const Abort& a, uint64_t reqid);
bool decode(const ipc::Message& m, Abort& out, std::string& err);
ipc::Message encode(SpoolProbe& p, uint64_t reqid);  // moves the fd
bool decode(ipc::Message& m, SpoolProbe& out, std::string& err);  // moves the fd out
ipc::Message encode(const Fail& f, uint64_t reqid);
// Strict on the code (400..599) and the text; an enhanced code that does not fit the reply code is
// dropped to "" (the receiver then picks a generic one).
bool decode(const ipc::Message& m, Fail& out, std::string& err);

// Recipients: a group opens at rcpt, then rcpt_notify and rcpt_orcpt, each at most once.
ipc::Message encode(const Commit& c, uint64_t reqid);
bool decode(const ipc::Message& m, Commit& out, std::string& err);

}  // namespace mta::wire
