// The Sendmail milter protocol, version 6, as pure functions over bytes: the packets the MTA sends, a
// stream decoder for what a milter answers, and option negotiation. No I/O, no clock: the milter client
// (mta-smtpd, and the queue side for sendmail mail) owns the socket, the timeouts and the session state.
// A milter's bytes are as untrusted as the network's: every reply has a hard size limit, every field is
// checked, and the first thing the decoder does not understand is an error that ends the stream.
//
// Wire format, both ways: uint32 length (big endian, counting the command byte and the data), one
// command byte, the data. Strings are NUL-terminated; numbers are uint32 big endian, the port uint16.
// Names and values are those of libmilter's mfdef.h; the layouts are what libmilter, Sendmail and
// Postfix put on the wire (no RFC describes this protocol).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mta::milter {

inline constexpr uint32_t kVersion = 6;           // SMFI_PROT_VERSION, the newest we speak
inline constexpr uint32_t kMinVersion = 2;        // older milters are refused, as libmilter refuses MTAs
inline constexpr std::size_t kBodyChunk = 65535;  // MILTER_CHUNK_SIZE: most body bytes in one SMFIC_BODY

// ---- commands, MTA -> milter
inline constexpr char SMFIC_ABORT = 'A';          // abort the current message
inline constexpr char SMFIC_BODY = 'B';           // body chunk
inline constexpr char SMFIC_CONNECT = 'C';        // connection information
inline constexpr char SMFIC_MACRO = 'D';          // define macros for the next command
inline constexpr char SMFIC_BODYEOB = 'E';        // end of the body
inline constexpr char SMFIC_HELO = 'H';
inline constexpr char SMFIC_QUIT_NC = 'K';        // quit, a new connection follows on this socket
inline constexpr char SMFIC_HEADER = 'L';
inline constexpr char SMFIC_MAIL = 'M';
inline constexpr char SMFIC_EOH = 'N';            // end of headers
inline constexpr char SMFIC_OPTNEG = 'O';         // option negotiation (also the milter's answer to it)
inline constexpr char SMFIC_QUIT = 'Q';
inline constexpr char SMFIC_RCPT = 'R';
inline constexpr char SMFIC_DATA = 'T';
inline constexpr char SMFIC_UNKNOWN = 'U';        // an SMTP command the MTA does not know

// ---- replies, milter -> MTA
inline constexpr char SMFIR_ADDRCPT = '+';
inline constexpr char SMFIR_DELRCPT = '-';
inline constexpr char SMFIR_ADDRCPT_PAR = '2';    // add recipient with ESMTP arguments
inline constexpr char SMFIR_SHUTDOWN = '4';       // 421 and close the SMTP session
inline constexpr char SMFIR_ACCEPT = 'a';
inline constexpr char SMFIR_REPLBODY = 'b';       // replace body (one chunk of the new body)
inline constexpr char SMFIR_CONTINUE = 'c';
inline constexpr char SMFIR_DISCARD = 'd';
inline constexpr char SMFIR_CHGFROM = 'e';        // change the envelope sender
inline constexpr char SMFIR_CONN_FAIL = 'f';      // cause a connection failure
inline constexpr char SMFIR_ADDHEADER = 'h';
inline constexpr char SMFIR_INSHEADER = 'i';
inline constexpr char SMFIR_SETSYMLIST = 'l';     // macro lists (see Reply::symlists)
inline constexpr char SMFIR_CHGHEADER = 'm';
inline constexpr char SMFIR_PROGRESS = 'p';       // still working: restart the timeout
inline constexpr char SMFIR_QUARANTINE = 'q';
inline constexpr char SMFIR_REJECT = 'r';
inline constexpr char SMFIR_SKIP = 's';           // send no more body chunks
inline constexpr char SMFIR_TEMPFAIL = 't';
inline constexpr char SMFIR_REPLYCODE = 'y';      // reject or tempfail with this SMTP reply

// ---- SMFIC_CONNECT address families
inline constexpr char SMFIA_UNKNOWN = 'U';        // no port and no address follow
inline constexpr char SMFIA_UNIX = 'L';
inline constexpr char SMFIA_INET = '4';
inline constexpr char SMFIA_INET6 = '6';

// ---- actions a milter may take (SMFIF_*): offered by the MTA, requested by the milter
inline constexpr uint32_t SMFIF_ADDHDRS = 0x001;     // SMFIR_ADDHEADER and SMFIR_INSHEADER
inline constexpr uint32_t SMFIF_CHGBODY = 0x002;     // SMFIR_REPLBODY
inline constexpr uint32_t SMFIF_ADDRCPT = 0x004;
inline constexpr uint32_t SMFIF_DELRCPT = 0x008;
inline constexpr uint32_t SMFIF_CHGHDRS = 0x010;     // SMFIR_CHGHEADER
inline constexpr uint32_t SMFIF_QUARANTINE = 0x020;
inline constexpr uint32_t SMFIF_CHGFROM = 0x040;
inline constexpr uint32_t SMFIF_ADDRCPT_PAR = 0x080;
inline constexpr uint32_t SMFIF_SETSYMLIST = 0x100;  // macro lists in the negotiation reply
inline constexpr uint32_t SMFIF_ALL = 0x1ff;         // SMFI_CURR_ACTS

// ---- protocol flags (SMFIP_*): NO* = do not send that command, NR_* = the milter will not answer it
inline constexpr uint32_t SMFIP_NOCONNECT = 0x00000001;
inline constexpr uint32_t SMFIP_NOHELO = 0x00000002;
inline constexpr uint32_t SMFIP_NOMAIL = 0x00000004;
inline constexpr uint32_t SMFIP_NORCPT = 0x00000008;
inline constexpr uint32_t SMFIP_NOBODY = 0x00000010;
inline constexpr uint32_t SMFIP_NOHDRS = 0x00000020;
inline constexpr uint32_t SMFIP_NOEOH = 0x00000040;
inline constexpr uint32_t SMFIP_NR_HDR = 0x00000080;
inline constexpr uint32_t SMFIP_NOUNKNOWN = 0x00000100;
inline constexpr uint32_t SMFIP_NODATA = 0x00000200;
inline constexpr uint32_t SMFIP_SKIP = 0x00000400;        // the MTA understands SMFIR_SKIP
inline constexpr uint32_t SMFIP_RCPT_REJ = 0x00000800;    // also send RCPTs the MTA rejected
inline constexpr uint32_t SMFIP_NR_CONN = 0x00001000;
inline constexpr uint32_t SMFIP_NR_HELO = 0x00002000;
inline constexpr uint32_t SMFIP_NR_MAIL = 0x00004000;
inline constexpr uint32_t SMFIP_NR_RCPT = 0x00008000;
inline constexpr uint32_t SMFIP_NR_DATA = 0x00010000;
inline constexpr uint32_t SMFIP_NR_UNKN = 0x00020000;
inline constexpr uint32_t SMFIP_NR_EOH = 0x00040000;
inline constexpr uint32_t SMFIP_NR_BODY = 0x00080000;
inline constexpr uint32_t SMFIP_HDR_LEADSPC = 0x00100000; // header values keep (and get no added) leading space
inline constexpr uint32_t SMFIP_MDS_256K = 0x10000000;    // libmilter-internal data size bits; we never
inline constexpr uint32_t SMFIP_MDS_1M = 0x20000000;      // offer them, so a milter may not set them
inline constexpr uint32_t SMFIP_ALL = 0x001fffff;         // SMFI_CURR_PROT: every defined flag

// ---- macro stages (SMFIM_*): which command a requested macro list is for
inline constexpr uint32_t SMFIM_CONNECT = 0;
inline constexpr uint32_t SMFIM_HELO = 1;
inline constexpr uint32_t SMFIM_ENVFROM = 2;
inline constexpr uint32_t SMFIM_ENVRCPT = 3;
inline constexpr uint32_t SMFIM_DATA = 4;
inline constexpr uint32_t SMFIM_EOM = 5;
inline constexpr uint32_t SMFIM_EOH = 6;
inline constexpr uint32_t kMacroStages = 7;

// ---- limits on what a milter may send (beyond the packet limits of Limits)
inline constexpr std::size_t kMaxHeaderName = 256;
inline constexpr std::size_t kMaxAddress = 1000;     // ADDRCPT, DELRCPT, CHGFROM: "<addr>" as sent
inline constexpr std::size_t kMaxEsmtpArgs = 1000;   // the ESMTP argument string of ADDRCPT_PAR, CHGFROM
inline constexpr std::size_t kMaxReason = 1000;      // QUARANTINE reason
inline constexpr std::size_t kMaxReplyLines = 32;    // libmilter's MAXREPLIES
inline constexpr std::size_t kMaxReplyLine = 1000;   // one line of REPLYCODE, code included (libmilter: text <= 980)
inline constexpr std::size_t kMaxMacroName = 64;
inline constexpr std::size_t kMaxMacrosPerStage = 64;

// ---- encoders: each returns one complete packet. Strings end at their first NUL, if any (the protocol
// cannot carry one); callers pass text without NUL.
namespace cmd {
using Macros = std::vector<std::pair<std::string, std::string>>;  // name ("j", "{client_addr}"), value

std::string optneg(uint32_t version, uint32_t actions, uint32_t protocol);
// `command`: the SMFIC_* the macros belong to. Names go out as given (braces included).
std::string macro(char command, const Macros& macros);
// family SMFIA_*: INET/INET6/UNIX carry port and address (a socket path for UNIX, port 0); UNKNOWN neither.
std::string connect(std::string_view hostname, char family, uint16_t port, std::string_view address);
std::string helo(std::string_view name);
std::string mail(const std::vector<std::string>& args);  // "<sender>", then ESMTP args one by one
std::string rcpt(const std::vector<std::string>& args);  // "<recipient>", then ESMTP args
std::string data();
// The value as the milter should see it (without the leading space unless SMFIP_HDR_LEADSPC was agreed).
// CRLF inside a folded value is sent as a bare LF, as Sendmail and Postfix do and libmilter filters expect.
std::string header(std::string_view name, std::string_view value);
std::string eoh();
// At most kBodyChunk bytes: a larger chunk is a bug of the caller and aborts the process.
std::string body(std::string_view chunk);
std::string bodyeob();
std::string abort();
std::string quit();
std::string quit_nc();
std::string unknown(std::string_view command_line);
}  // namespace cmd

// Splits a body into the chunks of successive SMFIC_BODY packets (views into `body`; none for "").
std::vector<std::string_view> body_chunks(std::string_view body);

// ---- replies

// The macros a milter wants for one stage (SMFIM_*); an empty list means none.
struct SymList {
    uint32_t stage = 0;
    std::vector<std::string> macros;
    bool operator==(const SymList&) const = default;
};

// One decoded reply. `code` says which fields are set; all others stay empty or 0.
//   SMFIC_OPTNEG       version, actions, protocol, symlists (optional; as sent, each stage at most once)
//   SMFIR_SETSYMLIST   symlists (at least one)
//   SMFIR_REPLYCODE    smtp_code (400..599) and lines: the complete reply lines, "550-5.7.1 a", "550 5.7.1 b",
//                      without CRLF, '%' unescaped as Postfix does ("%%" -> "%", a lone '%' dropped)
//   SMFIR_ADDHEADER    name, value
//   SMFIR_INSHEADER    index (0 = before the first header), name, value
//   SMFIR_CHGHEADER    index (1 = the first header of that name; Sendmail and Postfix read 0 as 1), name,
//                      value ("" = delete that header)
//   SMFIR_ADDRCPT, SMFIR_DELRCPT       address
//   SMFIR_ADDRCPT_PAR, SMFIR_CHGFROM   address, args (the ESMTP arguments as one string, "" if none)
//   SMFIR_REPLBODY     body (any bytes: one chunk of the new body)
//   SMFIR_QUARANTINE   reason
//   the others (accept, continue, discard, reject, tempfail, progress, skip, shutdown, conn_fail): nothing
// Header values: a line break is a fold, always followed by a space or tab and more than white space; a
// milter may send it as LF (what libmilter documents) or CRLF, and both are normalised to CRLF here.
// No other CR, LF or control byte but tab, and no DEL, is accepted; bytes >= 0x80 pass (RFC 6532).
// Addresses, args and reasons hold no control byte; reply lines only printable ASCII and tab.
struct Reply {
    char code = 0;
    uint32_t version = 0, actions = 0, protocol = 0;
    std::vector<SymList> symlists;
    int smtp_code = 0;
    std::vector<std::string> lines;
    uint32_t index = 0;
    std::string name, value;
    std::string address, args;
    std::string body;
    std::string reason;
    bool operator==(const Reply&) const = default;
};

// "SMFIR_ADDHEADER", "SMFIC_OPTNEG", ...; nullptr for a byte that is no reply code.
const char* reply_name(char code);

// Decodes the data of one reply packet with code `code`. False with a short error on anything malformed;
// `out` is then unspecified.
bool parse_reply(char code, std::string_view data, Reply& out, std::string& err);

// Packet limits, on the length field (command byte + data). libmilter sends at most 65535 data bytes per
// packet (REPLBODY in chunks of that size); the larger body limit leaves room for milters that send the
// whole new body in one packet. A longer packet is refused as soon as its 5-byte head is in, unread.
struct Limits {
    std::size_t max_packet = 64 * 1024;
    std::size_t max_body_packet = 1024 * 1024;  // SMFIR_REPLBODY
};

// Replies from a stream, fed in whatever pieces the socket returns. Holds at most one packet (bounded
// by Limits). After an error every call returns error again and consumes nothing: the connection to
// that milter is beyond repair (the caller applies milter_default_action and closes it).
class ReplyDecoder {
public:
    enum class Status { need_more, reply, error };

    explicit ReplyDecoder(Limits limits = {}) : limits_(limits) {}

    // Consumes bytes from the front of `in`, up to the end of at most one packet.
    // reply: `out` holds the next reply (bytes after it are left in `in`); need_more: all of `in` was
    // taken and no packet is complete yet; error: see error().
    Status next(std::string_view& in, Reply& out);

    const std::string& error() const { return err_; }
    // No partial packet held: an EOF here is clean, elsewhere the milter died mid-reply.
    bool idle() const { return head_len_ == 0 && err_.empty(); }

private:
    Status fail(std::string why);

    Limits limits_;
    unsigned char head_[5] = {};
    std::size_t head_len_ = 0;
    std::size_t data_len_ = 0;  // data bytes the current packet has (length field - 1)
    std::string data_;
    std::string err_;
};

// ---- option negotiation

// What we offer: SMFIC_OPTNEG's three numbers. `protocol` holds the flags we can honour (every NO* flag,
// and the NR_* and other flags the client implements).
struct Offer {
    uint32_t version = kVersion;
    uint32_t actions = 0;
    uint32_t protocol = 0;
};

struct Agreement {
    uint32_t version = 0;     // the milter's version, 2..offer.version
    uint32_t actions = 0;     // what the milter may do (SMFIF_*), a subset of the offer
    uint32_t protocol = 0;    // SMFIP_* in force, plus NOUNKNOWN (version 2) and NODATA (versions 2 and 3):
                              // those commands did not exist yet
    std::vector<SymList> symlists;  // macro lists the milter asked for, replacing our defaults per stage
};

// Checks the milter's SMFIC_OPTNEG reply against our offer as Sendmail does: a version below 2 or above
// ours, an action or protocol flag we did not offer, or macro lists when we did not offer
// SMFIF_SETSYMLIST, is an error.
bool negotiate(const Offer& ours, const Reply& theirs, Agreement& out, std::string& err);

// Whether the MTA sends `command` to this milter at all (false for the steps it opted out of).
bool sends(const Agreement& a, char command);
// Whether the milter answers `command` (false for MACRO, ABORT, QUIT, QUIT_NC and the NR_* steps).
bool answers(const Agreement& a, char command);
// The SMFIF_* flag a modification reply needs in Agreement::actions; 0 for replies that need none.
uint32_t action_needed(char reply_code);

}  // namespace mta::milter
