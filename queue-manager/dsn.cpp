// DSN text: a human-readable part, the machine-readable message/delivery-status part, and the returned
// original (text/rfc822-headers or message/rfc822). Remote replies are sanitised and folded.
#include "queue-manager/dsn.h"

#include <cstdio>
#include <ctime>

#include "common/mail_headers.h"
#include "common/protocol.h"
#include "queue-manager/bounce_class.h"
#include "queue-manager/qid.h"

namespace mta::queue {
namespace {

// Fold a header value at spaces so no line exceeds ~78 characters (hard-split very long words).
std::string fold(std::string_view name, std::string_view value) {
    std::string out(name);
    out += ":";
    std::size_t col = out.size();
    std::size_t i = 0;
    while (i < value.size()) {
        while (i < value.size() && value[i] == ' ') i++;
        std::size_t j = value.find(' ', i);
        if (j == std::string_view::npos) j = value.size();
        std::string_view word = value.substr(i, std::min<std::size_t>(j - i, 900));
        if (word.empty()) break;
        if (col + 1 + word.size() > 78 && col > name.size() + 1) {
            out += "\r\n";
            col = 0;
        }
        out += " ";
        out += word;
        col += 1 + word.size();
        i += word.size();
    }
    return out + "\r\n";
}

const char* action(DsnKind k, const RecipientRecord& r) {
    if (k == DsnKind::success) return (r.flags & kRcptRelayed) ? "relayed" : "delivered";
    return k == DsnKind::failure ? "failed" : "delayed";
}

// Addresses of an SMTPUTF8 message keep their UTF-8 (smtpd validated it); everything else is ASCII.
std::string addr_text(std::string_view a, bool utf8) {
    if (!utf8) return dsn_sanitise(a);
    std::string out;
    for (char c : a.substr(0, 1000)) out += (static_cast<unsigned char>(c) >= 0x80 || (c >= 0x20 && c < 0x7f)) ? c : '?';
    return out;
}

}  // namespace

bool notify_allows(uint64_t notify, DsnKind kind) {
    if (notify & ipc::kNotifyNever) return false;
    if (notify == 0) return kind != DsnKind::success;
    switch (kind) {
    case DsnKind::failure: return notify & ipc::kNotifyFailure;
    case DsnKind::delay: return notify & ipc::kNotifyDelay;
    case DsnKind::success: return notify & ipc::kNotifySuccess;
    }
    return false;
}

bool return_full(const MessageRecord& m, DsnKind kind) {
    return kind == DsnKind::failure && m.ret != 2 && m.size <= kMaxReturnedBody;
}

RemoteReply split_remote(std::string_view text) {
    // mta-smtp reports a remote reply as "host[addr] said: 550 5.1.1 text (in reply to RCPT TO command)".
    RemoteReply out;
    std::string_view reply = text;
    std::size_t said = text.find("] said: ");
    std::size_t open = said == std::string_view::npos ? said : text.rfind('[', said);
    if (open != std::string_view::npos && open > 0 && text.substr(0, open).find(' ') == std::string_view::npos) {
        out.mta = std::string(text.substr(0, open));
        reply = text.substr(said + 8);
    }
    std::size_t tail = reply.rfind(" (in reply to ");
    if (tail != std::string_view::npos && reply.back() == ')') reply = reply.substr(0, tail);
    out.smtp = reply.size() >= 3 && reply[0] >= '2' && reply[0] <= '5' && reply[1] >= '0' && reply[1] <= '9' &&
               reply[2] >= '0' && reply[2] <= '9' && (reply.size() == 3 || reply[3] == ' ');
    out.diagnostic = std::string(out.smtp ? reply : text);
    return out;
}

std::string status_code(std::string_view text, DsnKind kind) {
    // The first enhanced code among the first words: "5.1.1 ...", "550 5.1.1 ..." or
    // "host[addr] said: 550 5.1.1 ..." (as mta-smtp reports a remote reply).
    std::size_t i = 0;
    for (int w = 0; w < 8 && i < text.size(); w++) {
        std::size_t j = text.find(' ', i);
        if (j == std::string_view::npos) j = text.size();
        std::string_view word = text.substr(i, j - i);
        if (EnhancedCode code; parse_enhanced_code(word, code)) {
            // The code must agree with the outcome (an expired deferral carries a 4.x.x code).
            char want = kind == DsnKind::failure ? '5' : kind == DsnKind::delay ? '4' : '2';
            if (word[0] == want) return std::string(word);
            if (kind == DsnKind::failure && word[0] == '4') return "5" + std::string(word.substr(1));
        }
        i = j + 1;
    }
    return kind == DsnKind::failure ? "5.0.0" : kind == DsnKind::delay ? "4.0.0" : "2.0.0";
}

std::string header_block(std::string_view message) {
    std::size_t end = message.find("\r\n\r\n");
    std::size_t n = end == std::string_view::npos ? message.size() : end + 2;
    if (n > kMaxReturnedHeaders) {
        n = message.rfind("\r\n", kMaxReturnedHeaders);
        n = n == std::string_view::npos ? 0 : n + 2;
    }
    return std::string(message.substr(0, n));
}

std::string dsn_sanitise(std::string_view s, std::size_t max) {
    std::string out;
    for (char c : s.substr(0, max)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
    return out;
}

std::string build_dsn(const DsnInput& in) {
    // RFC 6533: an SMTPUTF8 message gets a global DSN (UTF-8 addresses, message/global-* parts).
    const bool utf8 = in.orig.smtputf8 != 0;
    const std::string glob = utf8 ? "global-" : "";
    std::string host = dsn_sanitise(in.hostname, 255);
    std::string qid = format_qid(in.orig_msgid), dsn_qid = format_qid(in.dsn_msgid);
    std::string boundary = dsn_qid + "/" + host;
    std::string subject = in.kind == DsnKind::failure ? "Undelivered Mail Returned to Sender"
                          : in.kind == DsnKind::delay ? "Delayed Mail (still being retried)"
                                                      : "Successful Mail Delivery Report";
    std::string s;
    s += "From: Mail Delivery System <MAILER-DAEMON@" + host + ">\r\n";
    s += fold("To", "<" + addr_text(in.orig.sender, utf8) + ">");
    s += "Subject: " + subject + "\r\n";
    s += "Date: " + rfc5322_date(in.now) + "\r\n";
    s += "Message-ID: <" + dsn_qid + ".dsn@" + host + ">\r\n";
    s += "Auto-Submitted: auto-replied\r\n";
    s += "MIME-Version: 1.0\r\n";
    s += "Content-Type: multipart/report; report-type=" + glob + "delivery-status;\r\n\tboundary=\"" + boundary + "\"\r\n";
    s += "Content-Transfer-Encoding: " + std::string(utf8 || in.full ? "8bit" : "7bit") + "\r\n";
    s += "\r\nThis is a MIME-encapsulated message.\r\n\r\n";

    s += "--" + boundary + "\r\n";
    s += "Content-Description: Notification\r\nContent-Type: text/plain; charset=" +
         std::string(utf8 ? "utf-8" : "us-ascii") + "\r\n\r\n";
    s += "This is the mail system at host " + host + ".\r\n\r\n";
    if (in.kind == DsnKind::failure)
        s += "I'm sorry to have to inform you that your message could not\r\nbe delivered to one or more "
             "recipients. It's attached below.\r\n\r\nThe mail system\r\n\r\n";
    else if (in.kind == DsnKind::delay)
        s += "####################################################################\r\n"
             "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\r\n"
             "####################################################################\r\n\r\n"
             "Your message could not be delivered for " +
             std::to_string((in.now > in.orig.arrival ? in.now - in.orig.arrival : 0) / 60) +
             " minutes. It will be retried until " + rfc5322_date(in.retry_until) + ".\r\n\r\nThe mail system\r\n\r\n";
    else
        s += "Your message was successfully delivered to the destination(s)\r\nlisted below. If the message "
             "was\r\nrelayed, no further notices should be expected from there.\r\n\r\nThe mail system\r\n\r\n";
    for (auto& r : in.rcpts) {
        std::string line = "<" + addr_text(r.addr, utf8) + ">: " + dsn_sanitise(r.last_error);
        s += fold("", line).substr(2);  // fold without a header name
        s += "\r\n";
    }

    s += "--" + boundary + "\r\n";
    s += "Content-Description: Delivery report\r\nContent-Type: message/" + glob + "delivery-status\r\n\r\n";
    s += "Reporting-MTA: dns; " + host + "\r\n";
    s += "X-Queue-ID: " + qid + "\r\n";
    if (!in.orig.envid.empty()) s += "Original-Envelope-Id: " + dsn_sanitise(in.orig.envid, 100) + "\r\n";
    if (!in.orig.sender.empty())
        s += fold("X-Original-Sender", std::string(utf8 ? "utf-8; " : "rfc822; ") + addr_text(in.orig.sender, utf8));
    s += "Arrival-Date: " + rfc5322_date(in.orig.arrival) + "\r\n";
    for (auto& r : in.rcpts) {
        s += "\r\n";
        s += fold("Final-Recipient", std::string(utf8 ? "utf-8; " : "rfc822; ") + addr_text(r.addr, utf8));
        if (!r.orcpt.empty() && r.orcpt.find(';') != std::string::npos)
            s += fold("Original-Recipient", addr_text(r.orcpt, utf8));
        s += "Action: " + std::string(action(in.kind, r)) + "\r\n";
        s += "Status: " + status_code(r.last_error, in.kind) + "\r\n";
        RemoteReply rr = split_remote(r.last_error);
        if (!rr.mta.empty()) s += fold("Remote-MTA", "dns; " + dsn_sanitise(rr.mta, 255));
        // RFC 3464 §2.3.6: "smtp" only for an SMTP reply; our own diagnostics use an X- type.
        if (!rr.diagnostic.empty())
            s += fold("Diagnostic-Code", (rr.smtp ? "smtp; " : "X-mta; ") + dsn_sanitise(rr.diagnostic, 2000));
        if (r.last_attempt) s += "Last-Attempt-Date: " + rfc5322_date(r.last_attempt) + "\r\n";
        if (in.kind == DsnKind::delay) s += "Will-Retry-Until: " + rfc5322_date(in.retry_until) + "\r\n";
    }
    s += "\r\n--" + boundary + "\r\n";
    if (in.full)
        s += "Content-Description: Undelivered Message\r\nContent-Type: message/" +
             std::string(utf8 ? "global" : "rfc822") + "\r\n\r\n";
    else
        s += "Content-Description: Message Headers\r\nContent-Type: " +
             std::string(utf8 ? "message/global-headers" : "text/rfc822-headers") + "\r\n\r\n";
    s += in.original;
    if (s.size() < 2 || s.compare(s.size() - 2, 2, "\r\n") != 0) s += "\r\n";
    s += "\r\n--" + boundary + "--\r\n";
    return s;
}

}  // namespace mta::queue
