// The limits and text rules every role applies to what travels between roles or is stored by the queue:
// defined here once, so that nothing one role accepts can be refused by the next one.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mta::wire {

// Longest envelope address (sender, recipient), in octets of its canonical "local@domain" form.
// RFC 5321 §4.5.3.1.1 caps the local part at 64 octets and §4.5.3.1.2 the domain at 255, so 64 + 1 + 255.
// mta-smtpd checks exactly those two parts (addr::parse_path, measured as written; the canonical form is
// never longer), and alias targets pass through the same parser, so every address accepted over SMTP fits.
// The 256-octet path limit of §4.5.3.1.3 is not enforced at the SMTP level (Postfix does not either).
inline constexpr std::size_t kMaxAddress = 64 + 1 + 255;
// ORCPT as stored: "addr-type;" (at most 32 octets, checked by mta-smtpd) plus the xtext-decoded address,
// at most 500 octets (RFC 3461 §4.2).
inline constexpr std::size_t kMaxOrcpt = 32 + 1 + 500;
inline constexpr std::size_t kMaxEnvid = 100;          // RFC 3461 §4.4 ENVID, decoded
inline constexpr std::size_t kMaxClientField = 1000;   // client_addr, client_helo, auth_user
inline constexpr std::size_t kMaxNexthop = 300;        // domain (255) or "[literal]:port"
inline constexpr std::size_t kMaxResultText = 1000;    // text of one recipient's delivery result
inline constexpr std::size_t kMaxErrorText = 2000;     // last delivery error the queue keeps per recipient
inline constexpr std::size_t kMaxHoldReason = 200;     // why a message was queued held (DMARC quarantine)
inline constexpr std::size_t kMaxRecipients = 100000;  // recipient groups in one commit or deliver
inline constexpr uint64_t kMaxNotify = 15;             // ipc::kNotify* bits

// "Clean text": at most `max` octets and no C0 control byte (NUL, CR, LF, TAB, ...) nor DEL. This is
// what the queue stores and what every deliverer accepts: envelope text ends up in SMTP command lines
// and header fields, where a control byte is an injection. Bytes >= 0x80 pass (SMTPUTF8).
bool clean_text(std::string_view s, std::size_t max);
// `s` made clean: control bytes become spaces, then cut to `max` octets (for texts we build ourselves
// from peer replies or errno strings).
std::string make_clean(std::string_view s, std::size_t max);

// Queue ids as humans see them (logs, "250 ... queued as", mtaqueue, body file names): the 64-bit
// message id as 16 upper-case hex digits. parse_qid is its strict inverse.
std::string format_qid(uint64_t msgid);
std::optional<uint64_t> parse_qid(std::string_view s);

}  // namespace mta::wire
