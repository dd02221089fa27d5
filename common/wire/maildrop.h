// The maildrop file: the message from sendmail (any local user) to mta-queue, written into the
// maildrop directory. The queue trusts nothing in a maildrop file: parse_maildrop is strict, bounded and fuzzed; the uid comes from the file's owner.
//
// Format (all lines LF-terminated, no other control bytes):
//   MTA-MAILDROP 1
//   U <uid, decimal>
//   S <sender, empty for the null sender>
//   N <DSN NOTIFY bits, decimal>     (optional, sendmail -N; ipc::kNotify* bits)
//   T FULL|HDRS                      (optional, sendmail -R: DSN RET)
//   E <envelope id>                  (optional, sendmail -V: DSN ENVID, printable ASCII, <= 100)
//   R <recipient>            (one or more)
//   <empty line>
//   <message, CRLF line ends, no bare CR or LF>
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mta::wire {

inline constexpr std::string_view kMaildropMagic = "MTA-MAILDROP 1";
inline constexpr std::size_t kMaxMaildropRecipients = 10000;

struct Maildrop {
    uint64_t uid = 0;
    std::string sender;
    uint64_t notify = 0;      // 0: not given; else ipc::kNotifyNever alone or success|failure|delay bits
    uint8_t ret = 0;          // 0 not given, 1 FULL, 2 HDRS (as MessageRecord::ret)
    std::string envid;
    std::vector<std::string> rcpts;
    std::string body;
};

// Valid values for the optional maildrop fields (the queue stores them as SMTP's DSN parameters).
bool maildrop_notify_ok(uint64_t notify);
bool maildrop_envid_ok(std::string_view envid);

std::string encode_maildrop(const Maildrop& m);
bool parse_maildrop(std::string_view bytes, Maildrop& out, std::string& err);

// A plausible envelope address for the maildrop: 1..kMaxAddress bytes, no spaces or control bytes,
// exactly one '@' with something on both sides.
bool maildrop_address_ok(std::string_view a);

}  // namespace mta::wire
