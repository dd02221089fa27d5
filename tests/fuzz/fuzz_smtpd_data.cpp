// libFuzzer target for the DATA/BDAT body state machine: any chunking gives the same result, the
// data ends only at CRLF.CRLF, and an accepted body round-trips through dot-stuffing exactly; with
// missing headers to add, the body is the same plus only those lines, and a second pass adds nothing.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "smtpd/smtpd_data.h"
#include "tests/fuzz/fuzz_require.h"

using namespace mta::smtpd;

namespace {


struct Out {
    std::string body;
    std::size_t consumed = 0;
    bool done = false, refused = false;
    uint64_t received = 0, size = 0;
    bool operator==(const Out& o) const {
        // A refused body is thrown away; how much of it was buffered, and how many of its Received:
        // fields were seen before the refusal, may depend on the chunking.
        return (refused || (body == o.body && received == o.received)) && consumed == o.consumed && done == o.done &&
               refused == o.refused && size == o.size;
    }
};

const mta::MissingHeaders kAdd{"<20261128120000.0000000000000001@mx.example>", "Sat, 28 Nov 2026 12:00:00 +0000"};

Out run(BodyReader::Mode mode, std::string_view in, std::size_t step, uint64_t limit, const mta::MissingHeaders& add = {}) {
    BodyReader r(mode, limit, add);
    Out o;
    while (o.consumed < in.size() && !r.done()) {
        std::size_t n = std::min(step, in.size() - o.consumed);
        o.consumed += r.feed(in.substr(o.consumed, n), o.body);
    }
    if (mode == BodyReader::Mode::raw) r.finish(o.body);
    o.done = r.done();
    o.refused = r.refused();
    o.received = r.received_headers();
    o.size = r.size();
    return o;
}

// Reference un-stuffing of CRLF lines (valid when there is no bare CR or LF): drop one leading dot.
std::string unstuff(std::string_view s) {
    std::string out;
    while (!s.empty()) {
        std::size_t eol = s.find("\r\n");
        std::string_view line = s.substr(0, eol == std::string_view::npos ? s.size() : eol + 2);
        if (line[0] == '.') line.remove_prefix(1);
        out += line;
        s.remove_prefix(eol == std::string_view::npos ? s.size() : eol + 2);
    }
    return out;
}

// Whether `filled` is `raw` with one run of our header lines put in at one place: the missing ones
// (either or both), optionally after a CRLF (an unterminated last field) or before one (a blank line).
bool inserted_once(const std::string& raw, const std::string& filled) {
    const std::string mid = "Message-ID: " + kAdd.message_id + "\r\n", date = "Date: " + kAdd.date + "\r\n";
    for (const std::string& lines : {mid + date, mid, date})
        for (const std::string& x : {lines, lines + "\r\n", "\r\n" + lines}) {
            if (filled.size() != raw.size() + x.size()) continue;
            for (std::size_t p = filled.find(x); p != std::string::npos; p = filled.find(x, p + 1))
                if (filled.compare(0, p, raw, 0, p) == 0 && filled.compare(p + x.size(), std::string::npos, raw, p) == 0)
                    return true;
        }
    return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const std::size_t step = 1 + data[0] % 13;
    const std::string buf(reinterpret_cast<const char*>(data) + 1, size - 1);
    const std::string_view in(buf);
    const uint64_t limit = 1 + data[0] * 16u;

    Out whole = run(BodyReader::Mode::dot, in, in.size() + 1, limit);
    require(run(BodyReader::Mode::dot, in, step, limit) == whole);
    require(run(BodyReader::Mode::dot, in, 1, limit) == whole);
    if (whole.done) {
        std::string_view taken = in.substr(0, whole.consumed);
        require(taken == ".\r\n" || (taken.size() >= 5 && taken.substr(taken.size() - 5) == "\r\n.\r\n"));
        // With plenty of room and nothing refused, the body is exactly the un-stuffed lines.
        Out big = run(BodyReader::Mode::dot, in, step, UINT64_MAX);
        if (!big.refused) require(unstuff(taken.substr(0, taken.size() - 3)) == big.body);
    } else {
        require(whole.consumed == in.size());
    }
    require(whole.body.size() <= whole.size && (whole.refused || whole.size <= limit));

    Out raw = run(BodyReader::Mode::raw, in, in.size() + 1, UINT64_MAX);
    require(run(BodyReader::Mode::raw, in, step, UINT64_MAX) == raw);
    require(raw.consumed == in.size() && !raw.done);
    if (!raw.refused) require(raw.body == buf);

    // Adding headers: chunking-independent, the client's bytes all kept in order around one inserted
    // run of our lines (plus the CRLF that ends the section or an unterminated last field), and the
    // result has both headers (a second pass adds nothing).
    Out filled = run(BodyReader::Mode::raw, in, in.size() + 1, UINT64_MAX, kAdd);
    require(run(BodyReader::Mode::raw, in, step, UINT64_MAX, kAdd) == filled);
    require(run(BodyReader::Mode::raw, in, 1, UINT64_MAX, kAdd) == filled);
    require(filled.refused == raw.refused && filled.size == raw.size);
    if (!raw.refused) {
        require(filled.received == raw.received);
        require(filled.body == raw.body || inserted_once(raw.body, filled.body));
        Out again = run(BodyReader::Mode::raw, filled.body, step, UINT64_MAX, kAdd);
        require(!again.refused && again.body == filled.body);
    }
    Out dot_filled = run(BodyReader::Mode::dot, in, step, limit, kAdd);
    require(run(BodyReader::Mode::dot, in, 1, limit, kAdd) == dot_filled);
    require(dot_filled.consumed == whole.consumed && dot_filled.refused == whole.refused);
    return 0;
}
