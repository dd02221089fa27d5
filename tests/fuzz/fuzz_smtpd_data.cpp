// libFuzzer target for the DATA/BDAT body state machine: any chunking gives the same result, the
// data ends only at CRLF.CRLF, and an accepted body round-trips through dot-stuffing exactly.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "smtpd/smtpd_data.h"

using namespace mta::smtpd;

namespace {

void require(bool cond) {
    if (!cond) std::abort();
}

struct Out {
    std::string body;
    std::size_t consumed = 0;
    bool done = false, refused = false;
    uint64_t received = 0, size = 0;
    bool operator==(const Out& o) const {
        // A refused body is thrown away; how much of it was buffered may depend on the chunking.
        return (refused || body == o.body) && consumed == o.consumed && done == o.done && refused == o.refused &&
               received == o.received && size == o.size;
    }
};

Out run(BodyReader::Mode mode, std::string_view in, std::size_t step, uint64_t limit) {
    BodyReader r(mode, limit);
    Out o;
    while (o.consumed < in.size() && !r.done()) {
        std::size_t n = std::min(step, in.size() - o.consumed);
        o.consumed += r.feed(in.substr(o.consumed, n), o.body);
    }
    if (mode == BodyReader::Mode::raw) r.finish();
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
    return 0;
}
