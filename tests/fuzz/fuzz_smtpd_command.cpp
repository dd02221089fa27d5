// libFuzzer target for smtpd command framing and parsing: no crash/UB on any bytes, framing always
// makes progress, lines never contain LF and never exceed the limit.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "smtpd/smtpd_command.h"
#include "tests/fuzz/fuzz_require.h"

using namespace mta::smtpd;

namespace {


void parse_line(std::string_view line) {
    Command c = parse_command(line);
    require(c.arg.size() <= line.size());
    MailParams mp;
    Reply r = parse_mail_params(c.arg, 1000000, mp);
    require(r.code == 0 || (r.code >= 500 && r.code <= 555 && r.enhanced && !r.text.empty()));
    if (!r) require(mp.size <= 1000000 && mp.envid.find_first_of("\r\n", 0) == std::string::npos);
    RcptParams rp;
    r = parse_rcpt_params(c.arg, rp);
    if (!r) require(rp.orcpt.find_first_of(std::string("\r\n\0", 3)) == std::string::npos);
    (void)parse_bdat(c.arg);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string buf(reinterpret_cast<const char*>(data), size);
    for (std::size_t limit : {std::size_t(16), std::size_t(512)}) {
        std::string_view rest(buf);
        bool discarding = false;
        while (true) {
            Frame f = next_command(rest, limit, discarding);
            require(f.consumed <= rest.size());
            if (f.kind == FrameKind::line) {
                require(f.line.size() <= limit && f.line.find('\n') == std::string_view::npos);
                // The line sits inside the consumed bytes and is followed by exactly CRLF.
                require(f.line.data() >= rest.data() &&
                        f.line.data() + f.line.size() + 2 == rest.data() + f.consumed);
                parse_line(f.line);
            }
            rest.remove_prefix(f.consumed);
            if (f.kind == FrameKind::need_more && f.consumed == 0) break;
        }
        require(rest.size() <= limit + 1);
    }
    parse_line(buf);
    return 0;
}
