// libFuzzer target for the queue's parsers of local-user input: maildrop files (written by any user
// via sendmail) and admin command lines (relayed by mtad from any user). No crash or UB on any bytes;
// an accepted maildrop re-encodes to the same bytes and satisfies the documented limits.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "queue-manager/admin.h"
#include "common/wire/maildrop.h"
#include "queue-manager/sendmail/prepare.h"
#include "tests/fuzz/fuzz_require.h"

using namespace mta;
using namespace mta::queue;
using namespace mta::sendmail;
using namespace mta::wire;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    std::string err;
    Maildrop m;
    if (parse_maildrop(in, m, err)) {
        require(!m.rcpts.empty() && m.rcpts.size() <= kMaxMaildropRecipients);
        for (auto& r : m.rcpts) require(maildrop_address_ok(r));
        require(m.body.find('\0') == std::string::npos);
        require(encode_maildrop(m) == in);
    }
    AdminCommand c;
    if (parse_admin(in, c, err)) {
        require(!c.verb.empty());
        if (c.verb == "show") require(c.filter.ids.size() == 1);
    }
    // The sendmail-side helpers must cope with anything on stdin too.
    std::string crlf = to_crlf(in, true);
    PrepareOptions o;
    o.extract_rcpts = true;
    o.sender = "a@b";
    prepare_message(crlf, o);
    header_addresses(in);
    (void)json_string(in);
    return 0;
}
