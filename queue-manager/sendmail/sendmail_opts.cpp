// sendmail(1) command-line parsing (pure). Mirrors Postfix's sendmail: the options scripts and MUAs
// use work, Sendmail options without meaning here are ignored, and modes we do not offer are refused
// with a reason instead of being silently misread.
#include "queue-manager/sendmail/sendmail_opts.h"

#include <cstring>

#include "common/protocol.h"
#include "common/wire/maildrop.h"
#include "queue-manager/sendmail/prepare.h"

namespace mta::sendmail {
using wire::maildrop_envid_ok;
using wire::maildrop_notify_ok;
namespace {

std::string lower(std::string s) {
    for (char& c : s)
        if (c >= 'A' && c <= 'Z') c = char(c + 32);
    return s;
}

std::string trim(const std::string& s) {
    std::size_t b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
    return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

std::string base_name(const std::string& p) {
    auto slash = p.rfind('/');
    return slash == std::string::npos ? p : p.substr(slash + 1);
}

}  // namespace

bool parse_dsn_notify(const std::string& value, uint64_t& out) {
    out = 0;
    std::size_t pos = 0;
    for (;;) {
        std::size_t comma = value.find(',', pos);
        std::string item = lower(trim(value.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos)));
        uint64_t bit = item == "never" ? ipc::kNotifyNever : item == "success" ? ipc::kNotifySuccess
                     : item == "failure" ? ipc::kNotifyFailure : item == "delay" ? ipc::kNotifyDelay : 0;
        if (bit == 0) return false;
        out |= bit;
        if (comma == std::string::npos) break;
        pos = comma + 1;
    }
    return maildrop_notify_ok(out);
}

bool parse_sendmail_args(const std::vector<std::string>& argv, SendmailArgs& out, std::string& err) {
    out = SendmailArgs{};
    std::string prog = argv.empty() ? std::string("sendmail") : base_name(argv[0]);
    if (prog == "mailq") out.mode = SendmailMode::list_queue;
    if (prog == "newaliases") out.mode = SendmailMode::newaliases;
    bool options_done = false;
    for (std::size_t i = 1; i < argv.size(); i++) {
        const std::string& a = argv[i];
        if (options_done || a.size() < 2 || a[0] != '-') {
            // "a@x, Bob <b@y>" is two recipients; an argument with no address stays as given so that
            // the caller reports it as a bad address.
            auto list = header_addresses(a);
            if (list.empty()) out.rcpts.push_back(a);
            for (auto& r : list) out.rcpts.push_back(r);
            continue;
        }
        if (a == "--") { options_done = true; continue; }
        for (std::size_t j = 1; j < a.size(); j++) {
            char o = a[j];
            if (strchr("tivnmsUG", o)) {  // flags; -v -n -m -s -U -G are accepted and ignored
                if (o == 't') out.extract = true;
                if (o == 'i') out.dot_ends = false;
                continue;
            }
            if (o == 'I') { out.mode = SendmailMode::newaliases; continue; }
            if (o == 'q') {  // -q flushes; -q<interval> (with -bd) is ignored; -qR/-qS/-qI... are refused
                std::string rest = a.substr(j + 1);
                if (rest.empty()) out.mode = SendmailMode::flush_queue;
                else if (rest.find_first_not_of("0123456789smhdw") != std::string::npos || rest[0] < '0' || rest[0] > '9') {
                    err = "-q" + rest.substr(0, 1) + " is not supported (use mtaqueue flush or mtaqueue list --domain)";
                    return false;
                }
                break;
            }
            if (o == 'o') {  // -oX: only -oi means anything here
                if (j + 1 >= a.size()) { err = "-o needs an option letter"; return false; }
                if (a.substr(j + 1) == "i") out.dot_ends = false;
                break;
            }
            if (!strchr("CcfrFBNRVbeXhLOA", o)) {
                err = std::string("unknown option -") + (o >= 0x21 && o < 0x7f ? std::string(1, o) : "?");
                return false;
            }
            std::string v;
            if (j + 1 < a.size()) v = a.substr(j + 1);
            else if (i + 1 < argv.size()) v = argv[++i];
            else {
                err = "-";
                err += o;
                err += " needs a value";
                return false;
            }
            switch (o) {
            case 'C': case 'c': out.config = v; out.explicit_config = true; break;
            case 'f': case 'r': out.sender = v; out.have_sender = true; break;
            case 'F': out.full_name = v; break;
            case 'B':
                if (lower(v) != "7bit" && lower(v) != "8bitmime") { err = "-B takes 7BIT or 8BITMIME"; return false; }
                break;  // the queue labels the body from its content
            case 'N':
                if (!parse_dsn_notify(v, out.notify)) {
                    err = "-N takes never, or a list of success, failure, delay";
                    return false;
                }
                break;
            case 'R':
                if (lower(v) == "full") out.ret = 1;
                else if (lower(v) == "hdrs") out.ret = 2;
                else { err = "-R takes full or hdrs"; return false; }
                break;
            case 'V':
                if (!maildrop_envid_ok(v)) { err = "-V takes an envelope id of 1..100 printable characters"; return false; }
                out.envid = v;
                break;
            case 'b':
                if (v == "m") out.mode = SendmailMode::deliver;
                else if (v == "p") out.mode = SendmailMode::list_queue;
                else if (v == "i") out.mode = SendmailMode::newaliases;
                else if (v == "s") { err = "-bs (SMTP on standard input) is not supported; submit on port 587"; return false; }
                else if (v == "v") { err = "-bv (address verification) is not supported"; return false; }
                else if (v == "d" || v == "D") { err = "-bd (daemon mode) is not supported; start mtad"; return false; }
                else { err = "-b" + v.substr(0, 1) + " is not supported (only -bm, -bp, -bi)"; return false; }
                break;
            case 'X': err = "-X (traffic log file) is not supported"; return false;
            default: break;  // -e -h -L -O -A: accepted for compatibility, ignored
            }
            break;  // the value used the rest of this argument
        }
    }
    return true;
}

}  // namespace mta::sendmail
