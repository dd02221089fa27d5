// Unit tests for common/mail_headers: RFC 5322 dates, our Message-ID, and where a missing
// Message-ID:/Date: goes (header section only, case-insensitive, folded fields once, any split).
#include <doctest/doctest.h>

#include <algorithm>
#include <string>

#include "common/mail_headers.h"

using namespace mta;

namespace {

const MissingHeaders kAdd{"<20261128120000.0000000000000ABC@mx.example>", "Sat, 28 Nov 2026 12:00:00 +0000"};
const std::string kMid = "Message-ID: <20261128120000.0000000000000ABC@mx.example>\r\n";
const std::string kDate = "Date: Sat, 28 Nov 2026 12:00:00 +0000\r\n";

// Feeds `msg` (CRLF lines) to a HeaderSection cut into pieces of `step` bytes, splitting text at the
// CRLFs as BodyReader does.
std::string scan(const std::string& msg, std::size_t step, const MissingHeaders& add = kAdd) {
    HeaderSection h(add);
    std::string out;
    std::size_t i = 0;
    while (i < msg.size()) {
        if (msg.compare(i, 2, "\r\n") == 0) {
            h.line_end(out);
            i += 2;
            continue;
        }
        std::size_t eol = msg.find("\r\n", i);
        std::size_t n = std::min(step, (eol == std::string::npos ? msg.size() : eol) - i);
        h.text(std::string_view(msg).substr(i, n), out);
        i += n;
    }
    h.end(out);
    return out;
}

void check_all_splits(const std::string& msg, const std::string& want, const MissingHeaders& add = kAdd) {
    for (std::size_t step : {1, 2, 3, 5, 8, 1000}) CHECK_MESSAGE(scan(msg, step, add) == want, "step " << step);
    CHECK(with_missing_headers(msg, add) == want);
}

}  // namespace

TEST_CASE("RFC 5322 date with a numeric zone") {
    CHECK(rfc5322_date(0) == "Thu, 01 Jan 1970 00:00:00 +0000");
    CHECK(rfc5322_date(1700000000) == "Tue, 14 Nov 2023 22:13:20 +0000");
    CHECK(rfc5322_date(1795867200, 3600) == "Sat, 28 Nov 2026 13:00:00 +0100");
    CHECK(rfc5322_date(1795867200, -(5 * 3600 + 1800)) == "Sat, 28 Nov 2026 06:30:00 -0530");
}

TEST_CASE("Message-ID: UTC time, queue id, host name") {
    CHECK(make_message_id(1795867200, "0000000000000ABC", "mx.example") == "<20261128120000.0000000000000ABC@mx.example>");
}

TEST_CASE("missing headers go before the empty line") {
    check_all_splits("Subject: s\r\nTo: a@b\r\n\r\nbody\r\n", "Subject: s\r\nTo: a@b\r\n" + kMid + kDate + "\r\nbody\r\n");
    check_all_splits("\r\nbody\r\n", kMid + kDate + "\r\nbody\r\n");  // no header at all
}

TEST_CASE("present headers are kept, in any case, and not added again") {
    const std::string both = "message-ID: <x@y>\r\nDATE : Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\nb\r\n";
    check_all_splits(both, both);
    check_all_splits("Date: d\r\n\r\nb\r\n", "Date: d\r\n" + kMid + "\r\nb\r\n");
    check_all_splits("Message-Id:\r\n <folded@y>\r\n\r\nb\r\n", "Message-Id:\r\n <folded@y>\r\n" + kDate + "\r\nb\r\n");
}

TEST_CASE("only the header section counts") {
    check_all_splits("Subject: s\r\n\r\nMessage-ID: <in@body>\r\nDate: body\r\n",
                     "Subject: s\r\n" + kMid + kDate + "\r\nMessage-ID: <in@body>\r\nDate: body\r\n");
    // Names that merely start alike are other fields.
    check_all_splits("Message-IDs: x\r\nDated: y\r\nX-Date: z\r\n\r\nb\r\n",
                     "Message-IDs: x\r\nDated: y\r\nX-Date: z\r\n" + kMid + kDate + "\r\nb\r\n");
}

TEST_CASE("a message that is all headers gets them at the end") {
    check_all_splits("Subject: s\r\n", "Subject: s\r\n" + kMid + kDate);
    check_all_splits("", kMid + kDate);
    check_all_splits("Subject: no line end", "Subject: no line end\r\n" + kMid + kDate);  // BDAT may end so
}

TEST_CASE("a line that is no header field ends the section; an empty line keeps it body") {
    check_all_splits("Subject: s\r\nhello world\r\n", "Subject: s\r\n" + kMid + kDate + "\r\nhello world\r\n");
    check_all_splits("Subject: s\r\nno-colon\r\nx: y\r\n", "Subject: s\r\n" + kMid + kDate + "\r\nno-colon\r\nx: y\r\n");
    check_all_splits(" leading space\r\n", kMid + kDate + "\r\n leading space\r\n");
    check_all_splits(": no name\r\n", kMid + kDate + "\r\n: no name\r\n");
    check_all_splits("Subject: s\r\nlast line", "Subject: s\r\n" + kMid + kDate + "\r\nlast line");
    // Nothing to add: nothing inserted, not even the empty line.
    const std::string both = "Date: d\r\nMessage-ID: <m>\r\nhello\r\n";
    check_all_splits(both, both);
}

TEST_CASE("nothing to add (relayed mail): every byte passes unchanged") {
    for (const std::string m : {"Subject: s\r\n\r\nb\r\n", "", "hello\r\n", "Subject: s", " x\r\n\r\n"})
        check_all_splits(m, m, MissingHeaders{});
}

TEST_CASE("a line held back is bounded: a 2000-byte name-like line is body") {
    std::string longline(2000, 'a');
    check_all_splits("Subject: s\r\n" + longline + ": x\r\n", "Subject: s\r\n" + kMid + kDate + "\r\n" + longline + ": x\r\n");
}

TEST_CASE("Received: fields are counted in the header section only") {
    HeaderSection h;
    std::string out;
    for (const char* l : {"Received: a", "\tby b", "received : c", "Received-SPF: pass", "", "Received: body"}) {
        h.text(l, out);
        h.line_end(out);
    }
    CHECK(h.received() == 2);
}
