// The Sendmail milter protocol, version 6 (common/milter_proto.h): command packets, the reply decoder and
// its field checks, and option negotiation. Nothing a milter sends is trusted; encoders trust the caller.
#include "common/milter_proto.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace mta::milter {
namespace {

constexpr std::size_t kKeepBuffer = 64 * 1024;  // a larger packet buffer is freed after its packet

// ---- encoding

std::string_view until_nul(std::string_view s) { return s.substr(0, s.find('\0')); }

void put_u32(std::string& out, uint32_t v) {
    out += char(v >> 24);
    out += char(v >> 16);
    out += char(v >> 8);
    out += char(v);
}

void put_str(std::string& out, std::string_view s) {
    out.append(until_nul(s));
    out += '\0';
}

std::string packet(char command, std::string_view data = {}) {
    std::string out;
    out.reserve(5 + data.size());
    put_u32(out, static_cast<uint32_t>(data.size() + 1));
    out += command;
    out.append(data);
    return out;
}

std::string argv_packet(char command, const std::vector<std::string>& args) {
    std::string data;
    for (const auto& a : args) put_str(data, a);
    return packet(command, data);
}

// ---- decoding

uint32_t get_u32(const unsigned char* p) {
    return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}

struct Cursor {
    std::string_view in;
    bool u32(uint32_t& v) {
        if (in.size() < 4) return false;
        v = get_u32(reinterpret_cast<const unsigned char*>(in.data()));
        in.remove_prefix(4);
        return true;
    }
    bool str(std::string_view& s) {
        std::size_t n = in.find('\0');
        if (n == std::string_view::npos) return false;
        s = in.substr(0, n);
        in.remove_prefix(n + 1);
        return true;
    }
};

bool is_ctl(char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }
bool is_visible(char c) { return static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f; }
bool is_wsp(char c) { return c == ' ' || c == '\t'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool no_ctl(std::string_view s) { return std::none_of(s.begin(), s.end(), is_ctl); }

bool header_name_ok(std::string_view s) {
    if (s.empty() || s.size() > kMaxHeaderName) return false;
    return std::all_of(s.begin(), s.end(), [](char c) { return is_visible(c) && c != ':'; });
}

bool address_ok(std::string_view s) { return !s.empty() && s.size() <= kMaxAddress && no_ctl(s); }

// A header value: a line break (LF or CRLF) is a fold and must be followed by white space and then by
// something else; it becomes CRLF. Anything else that could end the field early is refused.
bool header_value(std::string_view in, std::string& out, std::string& why) {
    out.clear();
    out.reserve(in.size());
    for (std::size_t i = 0; i < in.size(); i++) {
        char c = in[i];
        if (c == '\r' || c == '\n') {
            if (c == '\r') {
                if (i + 1 == in.size() || in[i + 1] != '\n') return why = "bare CR in header value", false;
                i++;
            }
            std::size_t j = i + 1;
            if (j == in.size() || !is_wsp(in[j])) return why = "line break in header value without fold", false;
            while (j < in.size() && is_wsp(in[j])) j++;
            if (j == in.size() || in[j] == '\r' || in[j] == '\n')
                return why = "header value with a blank continuation line", false;
            out += "\r\n";
            continue;
        }
        if (c != '\t' && is_ctl(c)) return why = "control byte in header value", false;
        out += c;
    }
    return true;
}

// Macro names are separated by spaces (libmilter) or commas and tabs (what Postfix also accepts).
bool parse_names(std::string_view list, std::vector<std::string>& names, std::string& why) {
    std::size_t i = 0;
    while (i < list.size()) {
        if (list[i] == ' ' || list[i] == ',' || list[i] == '\t') {
            i++;
            continue;
        }
        std::size_t j = i;
        while (j < list.size() && list[j] != ' ' && list[j] != ',' && list[j] != '\t') j++;
        std::string_view name = list.substr(i, j - i);
        if (name.size() > kMaxMacroName || !std::all_of(name.begin(), name.end(), is_visible))
            return why = "bad macro name", false;
        if (names.size() == kMaxMacrosPerStage) return why = "too many macros for one stage", false;
        names.emplace_back(name);
        i = j;
    }
    return true;
}

// (uint32 stage, NUL-terminated list)*, each stage at most once, nothing left over.
bool parse_symlists(Cursor c, std::vector<SymList>& out, std::string& why) {
    bool seen[kMacroStages] = {};
    while (!c.in.empty()) {
        SymList s;
        std::string_view list;
        if (!c.u32(s.stage)) return why = "truncated macro list", false;
        if (s.stage >= kMacroStages) return why = "unknown macro stage " + std::to_string(s.stage), false;
        if (seen[s.stage]) return why = "macro stage " + std::to_string(s.stage) + " twice", false;
        seen[s.stage] = true;
        if (!c.str(list)) return why = "macro list without NUL", false;
        if (!parse_names(list, s.macros, why)) return false;
        out.push_back(std::move(s));
    }
    return true;
}

// Length of an RFC 3463 enhanced status code ("5.7.1", classes 2/4/5, 1-3 digits each) at the start of
// `s` and followed by a space or the end; 0 when there is none.
std::size_t enhanced_code(std::string_view s) {
    if (s.size() < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.') return 0;
    std::size_t i = 2;
    for (int part = 0; part < 2; part++) {
        std::size_t start = i;
        while (i < s.size() && i - start < 3 && is_digit(s[i])) i++;
        if (i == start) return 0;
        if (part == 0) {
            if (i == s.size() || s[i] != '.') return 0;
            i++;
        }
    }
    return i == s.size() || s[i] == ' ' ? i : 0;
}

// SMFIR_REPLYCODE: "ddd text" or libmilter's multi-line "ddd-text\r\n...\r\nddd text", NUL-terminated.
bool parse_replycode(std::string_view d, Reply& r, std::string& why) {
    if (d.empty() || d.back() != '\0') return why = "reply text without NUL", false;
    d.remove_suffix(1);
    if (d.find('\0') != std::string_view::npos) return why = "NUL inside the reply text", false;
    std::string text;  // Sendmail reads the text as a format string: "%%" means '%', as in Postfix
    for (std::size_t i = 0; i < d.size(); i++)
        if (d[i] != '%' || ++i < d.size()) text += d[i];
    for (std::size_t pos = 0;;) {
        std::size_t end = text.find("\r\n", pos);
        if (r.lines.size() == kMaxReplyLines) return why = "more than 32 reply lines", false;
        r.lines.push_back(text.substr(pos, end == std::string::npos ? std::string::npos : end - pos));
        if (end == std::string::npos) break;
        pos = end + 2;
    }
    for (std::size_t i = 0; i < r.lines.size(); i++) {
        std::string_view line = r.lines[i];
        bool last = i + 1 == r.lines.size();
        if (line.size() < 3 || (line[0] != '4' && line[0] != '5') || !is_digit(line[1]) || !is_digit(line[2]))
            return why = "reply line without a 4xx or 5xx code", false;
        if (line.size() > kMaxReplyLine) return why = "reply line too long", false;
        if (i > 0 && line.substr(0, 3) != std::string_view(r.lines[0]).substr(0, 3))
            return why = "reply lines with different codes", false;
        if (last ? (line.size() > 3 && line[3] != ' ') : (line.size() < 4 || line[3] != '-'))
            return why = "bad separator after the reply code", false;
        for (char c : line.substr(3)) {
            if (c == '\r' || c == '\n') return why = "CR or LF inside a reply line", false;
            if (c != '\t' && c != ' ' && !is_visible(c)) return why = "control or 8-bit byte in a reply line", false;
        }
        std::string_view rest = line.size() > 4 ? line.substr(4) : std::string_view();
        if (enhanced_code(rest) > 0 && rest[0] != line[0])
            return why = "enhanced status code of another class than the reply code", false;
    }
    r.smtp_code = (r.lines[0][0] - '0') * 100 + (r.lines[0][1] - '0') * 10 + (r.lines[0][2] - '0');
    return true;
}

// name NUL value NUL, after an optional uint32 index.
bool parse_header(Cursor c, bool indexed, Reply& r, std::string& why) {
    std::string_view name, value;
    if (indexed && !c.u32(r.index)) return why = "truncated header index", false;
    if (!c.str(name) || !c.str(value)) return why = "header without NUL", false;
    if (!c.in.empty()) return why = "data after the header value", false;
    if (!header_name_ok(name)) return why = "bad header name", false;
    r.name = name;
    return header_value(value, r.value, why);
}

// address NUL [args NUL]
bool parse_address(Cursor c, bool with_args, Reply& r, std::string& why) {
    std::string_view addr, args;
    if (!c.str(addr)) return why = "address without NUL", false;
    if (with_args && !c.in.empty() && !c.str(args)) return why = "ESMTP arguments without NUL", false;
    if (!c.in.empty()) return why = "data after the address", false;
    if (!address_ok(addr)) return why = "bad address", false;
    if (args.size() > kMaxEsmtpArgs || !no_ctl(args)) return why = "bad ESMTP arguments", false;
    r.address = addr;
    r.args = args;
    return true;
}

bool parse_data(char code, std::string_view data, Reply& r, std::string& why) {
    Cursor c{data};
    switch (code) {
    case SMFIC_OPTNEG:
        if (!c.u32(r.version) || !c.u32(r.actions) || !c.u32(r.protocol)) return why = "too short", false;
        return parse_symlists(c, r.symlists, why);
    case SMFIR_SETSYMLIST:
        if (data.empty()) return why = "no macro list", false;
        return parse_symlists(c, r.symlists, why);
    case SMFIR_REPLYCODE:
        return parse_replycode(data, r, why);
    case SMFIR_ADDHEADER:
        return parse_header(c, false, r, why);
    case SMFIR_INSHEADER:
    case SMFIR_CHGHEADER:
        return parse_header(c, true, r, why);
    case SMFIR_ADDRCPT:
    case SMFIR_DELRCPT:
        return parse_address(c, false, r, why);
    case SMFIR_ADDRCPT_PAR:
    case SMFIR_CHGFROM:
        return parse_address(c, true, r, why);
    case SMFIR_REPLBODY:
        r.body = data;
        return true;
    case SMFIR_QUARANTINE: {
        std::string_view reason;
        if (!c.str(reason) || !c.in.empty()) return why = "reason without NUL", false;
        if (reason.empty() || reason.size() > kMaxReason || !no_ctl(reason)) return why = "bad reason", false;
        r.reason = reason;
        return true;
    }
    default:  // the replies without data
        return data.empty() || (why = "unexpected data", false);
    }
}

}  // namespace

// ---- encoders

namespace cmd {

std::string optneg(uint32_t version, uint32_t actions, uint32_t protocol) {
    std::string data;
    put_u32(data, version);
    put_u32(data, actions);
    put_u32(data, protocol);
    return packet(SMFIC_OPTNEG, data);
}

std::string macro(char command, const Macros& macros) {
    std::string data(1, command);
    for (const auto& [name, value] : macros) {
        put_str(data, name);
        put_str(data, value);
    }
    return packet(SMFIC_MACRO, data);
}

std::string connect(std::string_view hostname, char family, uint16_t port, std::string_view address) {
    std::string data;
    put_str(data, hostname);
    data += family;
    if (family != SMFIA_UNKNOWN) {
        data += char(port >> 8);
        data += char(port);
        put_str(data, address);
    }
    return packet(SMFIC_CONNECT, data);
}

std::string helo(std::string_view name) {
    std::string data;
    put_str(data, name);
    return packet(SMFIC_HELO, data);
}

std::string mail(const std::vector<std::string>& args) { return argv_packet(SMFIC_MAIL, args); }
std::string rcpt(const std::vector<std::string>& args) { return argv_packet(SMFIC_RCPT, args); }
std::string data() { return packet(SMFIC_DATA); }

std::string header(std::string_view name, std::string_view value) {
    std::string data;
    put_str(data, name);
    value = until_nul(value);
    for (std::size_t i = 0; i < value.size(); i++)
        if (!(value[i] == '\r' && i + 1 < value.size() && value[i + 1] == '\n')) data += value[i];
    data += '\0';
    return packet(SMFIC_HEADER, data);
}

std::string eoh() { return packet(SMFIC_EOH); }

std::string body(std::string_view chunk) {
    // A caller bug, not input: a larger chunk would be refused by libmilter and end the milter session.
    if (chunk.size() > kBodyChunk) std::abort();
    return packet(SMFIC_BODY, chunk);
}

std::string bodyeob() { return packet(SMFIC_BODYEOB); }
std::string abort() { return packet(SMFIC_ABORT); }
std::string quit() { return packet(SMFIC_QUIT); }
std::string quit_nc() { return packet(SMFIC_QUIT_NC); }

std::string unknown(std::string_view command_line) {
    std::string data;
    put_str(data, command_line);
    return packet(SMFIC_UNKNOWN, data);
}

}  // namespace cmd

std::vector<std::string_view> body_chunks(std::string_view body) {
    std::vector<std::string_view> out;
    for (std::size_t i = 0; i < body.size(); i += kBodyChunk) out.push_back(body.substr(i, kBodyChunk));
    return out;
}

// ---- replies

const char* reply_name(char code) {
    switch (code) {
    case SMFIC_OPTNEG: return "SMFIC_OPTNEG";
    case SMFIR_ADDRCPT: return "SMFIR_ADDRCPT";
    case SMFIR_DELRCPT: return "SMFIR_DELRCPT";
    case SMFIR_ADDRCPT_PAR: return "SMFIR_ADDRCPT_PAR";
    case SMFIR_SHUTDOWN: return "SMFIR_SHUTDOWN";
    case SMFIR_ACCEPT: return "SMFIR_ACCEPT";
    case SMFIR_REPLBODY: return "SMFIR_REPLBODY";
    case SMFIR_CONTINUE: return "SMFIR_CONTINUE";
    case SMFIR_DISCARD: return "SMFIR_DISCARD";
    case SMFIR_CHGFROM: return "SMFIR_CHGFROM";
    case SMFIR_CONN_FAIL: return "SMFIR_CONN_FAIL";
    case SMFIR_ADDHEADER: return "SMFIR_ADDHEADER";
    case SMFIR_INSHEADER: return "SMFIR_INSHEADER";
    case SMFIR_SETSYMLIST: return "SMFIR_SETSYMLIST";
    case SMFIR_CHGHEADER: return "SMFIR_CHGHEADER";
    case SMFIR_PROGRESS: return "SMFIR_PROGRESS";
    case SMFIR_QUARANTINE: return "SMFIR_QUARANTINE";
    case SMFIR_REJECT: return "SMFIR_REJECT";
    case SMFIR_SKIP: return "SMFIR_SKIP";
    case SMFIR_TEMPFAIL: return "SMFIR_TEMPFAIL";
    case SMFIR_REPLYCODE: return "SMFIR_REPLYCODE";
    default: return nullptr;
    }
}

namespace {
std::string unknown_code(char code) {
    char buf[48];
    std::snprintf(buf, sizeof buf, "unknown reply code 0x%02x", static_cast<unsigned char>(code));
    return buf;
}
}  // namespace

bool parse_reply(char code, std::string_view data, Reply& out, std::string& err) {
    const char* name = reply_name(code);
    if (!name) return err = unknown_code(code), false;
    out = Reply{};
    out.code = code;
    std::string why;
    if (parse_data(code, data, out, why)) return true;
    err = std::string(name) + ": " + why;
    return false;
}

ReplyDecoder::Status ReplyDecoder::fail(std::string why) {
    err_ = std::move(why);
    std::string().swap(data_);
    return Status::error;
}

ReplyDecoder::Status ReplyDecoder::next(std::string_view& in, Reply& out) {
    if (!err_.empty()) return Status::error;
    while (head_len_ < 5) {
        if (in.empty()) return Status::need_more;
        head_[head_len_++] = static_cast<unsigned char>(in.front());
        in.remove_prefix(1);
        if (head_len_ == 4) {
            uint32_t len = get_u32(head_);
            if (len == 0) return fail("packet length 0");
            // Refused before a byte of its data is read: no limit is that large for any reply.
            if (len > std::max(limits_.max_packet, limits_.max_body_packet))
                return fail("packet length " + std::to_string(len) + " over the limit");
            data_len_ = len - 1;
        } else if (head_len_ == 5) {
            char code = static_cast<char>(head_[4]);
            const char* name = reply_name(code);
            if (!name) return fail(unknown_code(code));
            std::size_t limit = code == SMFIR_REPLBODY ? limits_.max_body_packet : limits_.max_packet;
            if (data_len_ + 1 > limit)
                return fail(std::string(name) + ": packet length " + std::to_string(data_len_ + 1) +
                            " over the limit of " + std::to_string(limit));
            data_.reserve(data_len_);
        }
    }
    std::size_t take = std::min(in.size(), data_len_ - data_.size());
    data_.append(in.substr(0, take));
    in.remove_prefix(take);
    if (data_.size() < data_len_) return Status::need_more;

    std::string err;
    bool ok = parse_reply(static_cast<char>(head_[4]), data_, out, err);
    head_len_ = 0;
    if (data_.capacity() > kKeepBuffer) std::string().swap(data_);
    else data_.clear();
    if (!ok) return fail(std::move(err));
    return Status::reply;
}

// ---- negotiation

bool negotiate(const Offer& ours, const Reply& theirs, Agreement& out, std::string& err) {
    char buf[128];
    if (theirs.code != SMFIC_OPTNEG) {
        const char* name = reply_name(theirs.code);
        err = std::string("expected SMFIC_OPTNEG, got ") + (name ? name : "an unknown reply");
        return false;
    }
    if (theirs.version < kMinVersion || theirs.version > ours.version) {
        std::snprintf(buf, sizeof buf, "milter protocol version %u, we speak %u to %u", theirs.version, kMinVersion,
                      ours.version);
        return err = buf, false;
    }
    if (theirs.actions & ~ours.actions) {
        std::snprintf(buf, sizeof buf, "milter asks for actions 0x%x, we offer 0x%x", theirs.actions, ours.actions);
        return err = buf, false;
    }
    if (theirs.protocol & ~ours.protocol) {
        std::snprintf(buf, sizeof buf, "milter asks for protocol flags 0x%x, we offer 0x%x", theirs.protocol,
                      ours.protocol);
        return err = buf, false;
    }
    if (!theirs.symlists.empty() && !(ours.actions & SMFIF_SETSYMLIST))
        return err = "milter sent macro lists, we did not offer SMFIF_SETSYMLIST", false;
    out.version = theirs.version;
    out.actions = theirs.actions;
    out.protocol = theirs.protocol;
    // Commands younger than the milter's version are not sent (as Sendmail does).
    if (theirs.version <= 2) out.protocol |= SMFIP_NOUNKNOWN;
    if (theirs.version <= 3) out.protocol |= SMFIP_NODATA;
    out.symlists = theirs.symlists;
    return true;
}

namespace {

// The opt-out (NO*) and no-reply (NR_*) flags of each command that has them.
struct Step {
    char command;
    uint32_t no_send, no_reply;
};
constexpr Step kSteps[] = {
    {SMFIC_CONNECT, SMFIP_NOCONNECT, SMFIP_NR_CONN}, {SMFIC_HELO, SMFIP_NOHELO, SMFIP_NR_HELO},
    {SMFIC_MAIL, SMFIP_NOMAIL, SMFIP_NR_MAIL},       {SMFIC_RCPT, SMFIP_NORCPT, SMFIP_NR_RCPT},
    {SMFIC_DATA, SMFIP_NODATA, SMFIP_NR_DATA},       {SMFIC_HEADER, SMFIP_NOHDRS, SMFIP_NR_HDR},
    {SMFIC_EOH, SMFIP_NOEOH, SMFIP_NR_EOH},          {SMFIC_BODY, SMFIP_NOBODY, SMFIP_NR_BODY},
    {SMFIC_UNKNOWN, SMFIP_NOUNKNOWN, SMFIP_NR_UNKN},
};

const Step* step(char command) {
    for (const Step& s : kSteps)
        if (s.command == command) return &s;
    return nullptr;
}

}  // namespace

bool sends(const Agreement& a, char command) {
    const Step* s = step(command);
    return !s || !(a.protocol & s->no_send);
}

bool answers(const Agreement& a, char command) {
    if (command == SMFIC_MACRO || command == SMFIC_ABORT || command == SMFIC_QUIT || command == SMFIC_QUIT_NC)
        return false;
    const Step* s = step(command);
    return !s || !(a.protocol & s->no_reply);
}

uint32_t action_needed(char reply_code) {
    switch (reply_code) {
    case SMFIR_ADDHEADER:
    case SMFIR_INSHEADER: return SMFIF_ADDHDRS;
    case SMFIR_CHGHEADER: return SMFIF_CHGHDRS;
    case SMFIR_REPLBODY: return SMFIF_CHGBODY;
    case SMFIR_ADDRCPT: return SMFIF_ADDRCPT;
    case SMFIR_DELRCPT: return SMFIF_DELRCPT;
    case SMFIR_ADDRCPT_PAR: return SMFIF_ADDRCPT_PAR;
    case SMFIR_CHGFROM: return SMFIF_CHGFROM;
    case SMFIR_QUARANTINE: return SMFIF_QUARANTINE;
    case SMFIR_SETSYMLIST: return SMFIF_SETSYMLIST;
    default: return 0;
    }
}

}  // namespace mta::milter
