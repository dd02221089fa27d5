// sendmail's message preparation, pure and without I/O: line ends, -t recipients, a missing From:.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace mta::sendmail {

// LF, CRLF and lone CR all become CRLF; with dot_ends (no -i), a line holding only "." ends the message.
std::string to_crlf(std::string_view in, bool dot_ends);

// Addresses of an address-list header value ("A <a@x>, b@y (comment), group: c@z;").
std::vector<std::string> header_addresses(std::string_view value);

struct PreparedMessage {
    std::string text;                  // final message, CRLF
    std::vector<std::string> rcpts;    // from To/Cc/Bcc (or Resent-To/Cc/Bcc) when extract_rcpts
};
struct PrepareOptions {
    bool extract_rcpts = false;        // -t: take To/Cc/Bcc, or Resent-To/Cc/Bcc when the message has
                                       // any Resent- header (as Postfix); drop Bcc and Resent-Bcc
    std::string sender;                // for a missing From:
    std::string full_name;             // -F
};
// Takes a CRLF message; adds From: when missing. A missing Date:/Message-ID: is the queue's to add at
// pickup (it knows the queue id), for every maildrop file alike (pickup.cpp).
PreparedMessage prepare_message(std::string_view crlf_message, const PrepareOptions& o);

}  // namespace mta::sendmail
