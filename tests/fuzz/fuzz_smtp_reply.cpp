// libFuzzer target for the SMTP client's parsers of remote bytes: parse_reply, parse_ehlo and sanitize
// never crash, and what they accept obeys the documented bounds. Also checks the body encoder's
// invariants (only CRLF line ends, a single terminator, chunking-independent) on the same bytes.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "smtp-client/smtp_body.h"
#include "smtp-client/smtp_reply.h"
#include "tests/fuzz/fuzz_require.h"

using namespace mta::smtp;

namespace {


void check_reply(std::string_view in) {
    // Consume replies one after another like the session does.
    std::size_t off = 0;
    for (int n = 0; n < 1000 && off < in.size(); n++) {
        Reply r;
        ParseResult res = parse_reply(in.substr(off), r);
        if (res.status != ParseStatus::complete) break;
        require(res.consumed > 0 && res.consumed <= in.size() - off);
        require(r.code >= 200 && r.code <= 599);
        require(!r.lines.empty() && r.lines.size() <= kMaxReplyLines);
        for (auto& l : r.lines) require(l.size() <= kMaxReplyLine);
        std::string s = r.full();
        require(s.size() <= kMaxResultText);
        for (char c : s) require(static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f);
        (void)parse_ehlo(r);
        off += res.consumed;
    }
}

void check_body(std::string_view in, std::size_t split) {
    BodyEncoder whole, parts;
    std::string a, b;
    whole.feed(in, a);
    whole.finish(a);
    split = in.empty() ? 0 : split % in.size();
    parts.feed(in.substr(0, split), b);
    parts.feed(in.substr(split), b);
    parts.finish(b);
    require(a == b);
    for (std::size_t i = 0; i < a.size(); i++) {
        if (a[i] == '\n') require(i > 0 && a[i - 1] == '\r');
        if (a[i] == '\r') require(i + 1 < a.size() && a[i + 1] == '\n');
    }
    require(a.size() >= 3 && a.compare(a.size() - 3, 3, ".\r\n") == 0);
    std::size_t term = a.find("\r\n.\r\n");
    require(term == std::string::npos || term == a.size() - 5);
    require(a.compare(0, 3, ".\r\n") != 0 || a.size() == 3);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    check_reply(in);
    check_body(in, size ? data[0] * 31u + size / 2 : 0);
    (void)sanitize(in);
    return 0;
}
