// libFuzzer target for what a milter sends back: milter::ReplyDecoder fed in pieces whose size the first
// input byte picks. No crash or UB on any bytes; the replies and the error do not depend on the pieces;
// every accepted reply keeps the promises of milter_proto.h (header names valid, folds only as CRLF +
// white space, reply lines that cannot break the SMTP reply, sizes within the limits), and negotiating
// on an OPTNEG reply works or fails cleanly.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "common/milter_proto.h"
#include "tests/fuzz/fuzz_require.h"

using namespace mta::milter;

namespace {

// Small limits, so that the fuzzer reaches them.
constexpr Limits kLimits{512, 2048};

struct Run {
    std::vector<Reply> replies;
    std::string error;
    std::size_t consumed = 0;
    bool operator==(const Run&) const = default;
};

Run decode(std::string_view in, std::size_t step) {
    ReplyDecoder d(kLimits);
    Run run;
    while (!in.empty()) {
        std::string_view piece = in.substr(0, step);
        std::size_t size = piece.size();
        for (;;) {
            Reply r;
            ReplyDecoder::Status s = d.next(piece, r);
            if (s == ReplyDecoder::Status::reply) {
                run.replies.push_back(std::move(r));
                continue;
            }
            if (s == ReplyDecoder::Status::error) {
                require(!d.error().empty());
                run.error = d.error();
                run.consumed += size - piece.size();
                require(d.next(piece, r) == ReplyDecoder::Status::error);  // stays stopped
                return run;
            }
            require(piece.empty());
            break;
        }
        run.consumed += size;
        in.remove_prefix(size);
    }
    return run;
}

bool ctl(char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }

bool no_ctl(std::string_view s) {
    for (char c : s)
        if (ctl(c)) return false;
    return true;
}

bool header_name_ok(std::string_view s) {
    if (s.empty() || s.size() > kMaxHeaderName) return false;
    for (char c : s)
        if (c <= ' ' || c >= 0x7f || c == ':') return false;
    return true;
}

// CR only in CRLF, LF only after CR and before white space that is followed by more than white space.
bool header_value_ok(std::string_view v) {
    for (std::size_t i = 0; i < v.size(); i++) {
        if (v[i] == '\r') {
            if (i + 2 >= v.size() || v[i + 1] != '\n' || (v[i + 2] != ' ' && v[i + 2] != '\t')) return false;
            std::size_t j = i + 2;
            while (j < v.size() && (v[j] == ' ' || v[j] == '\t')) j++;
            if (j == v.size() || v[j] == '\r') return false;
            i++;
        } else if (v[i] == '\n' || (v[i] != '\t' && ctl(v[i]))) {
            return false;
        }
    }
    return true;
}

bool reply_lines_ok(const Reply& r) {
    if (r.smtp_code < 400 || r.smtp_code > 599 || r.lines.empty() || r.lines.size() > kMaxReplyLines) return false;
    std::string code = std::to_string(r.smtp_code);
    for (std::size_t i = 0; i < r.lines.size(); i++) {
        const std::string& l = r.lines[i];
        if (l.size() > kMaxReplyLine || l.compare(0, 3, code) != 0) return false;
        bool last = i + 1 == r.lines.size();
        if (last ? (l.size() > 3 && l[3] != ' ') : (l.size() < 4 || l[3] != '-')) return false;
        for (char c : l)
            if (c != '\t' && (c < ' ' || c > '~')) return false;  // no CR, LF, control or 8-bit byte
    }
    return true;
}

void check(const Reply& r) {
    require(reply_name(r.code) != nullptr);
    switch (r.code) {
    case SMFIC_OPTNEG:
    case SMFIR_SETSYMLIST: {
        require(r.code == SMFIC_OPTNEG || !r.symlists.empty());
        uint32_t seen = 0;
        for (const SymList& s : r.symlists) {
            require(s.stage < kMacroStages && !(seen & (1u << s.stage)));
            seen |= 1u << s.stage;
            require(s.macros.size() <= kMaxMacrosPerStage);
            for (const std::string& m : s.macros)
                require(!m.empty() && m.size() <= kMaxMacroName && m.find_first_of(" ,\t") == std::string::npos &&
                        no_ctl(m));
        }
        Agreement a;
        std::string err;
        if (negotiate({kVersion, SMFIF_ALL, SMFIP_ALL}, r, a, err)) {
            require(a.version >= kMinVersion && a.version <= kVersion);
            require((a.actions & ~SMFIF_ALL) == 0);
        } else {
            require(!err.empty());
        }
        break;
    }
    case SMFIR_REPLYCODE:
        require(reply_lines_ok(r));
        break;
    case SMFIR_ADDHEADER:
    case SMFIR_INSHEADER:
    case SMFIR_CHGHEADER:
        require(header_name_ok(r.name));
        require(header_value_ok(r.value));
        require(r.value.size() < kLimits.max_packet * 2);
        break;
    case SMFIR_ADDRCPT:
    case SMFIR_DELRCPT:
    case SMFIR_ADDRCPT_PAR:
    case SMFIR_CHGFROM:
        require(!r.address.empty() && r.address.size() <= kMaxAddress && no_ctl(r.address));
        require(r.args.size() <= kMaxEsmtpArgs && no_ctl(r.args));
        require(r.args.empty() || r.code == SMFIR_ADDRCPT_PAR || r.code == SMFIR_CHGFROM);
        break;
    case SMFIR_REPLBODY:
        require(r.body.size() < kLimits.max_body_packet);
        break;
    case SMFIR_QUARANTINE:
        require(!r.reason.empty() && r.reason.size() <= kMaxReason && no_ctl(r.reason));
        break;
    default: {
        Reply bare;
        bare.code = r.code;
        require(r == bare);
    }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    std::size_t step = std::size_t(data[0]) + 1;
    std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
    Run pieces = decode(in, step);
    for (const Reply& r : pieces.replies) check(r);
    require(pieces == decode(in, in.size() + 1));
    return 0;
}
