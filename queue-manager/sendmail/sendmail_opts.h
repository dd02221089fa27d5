// sendmail(1)'s command line, parsed without side effects (see man/sendmail.1): Sendmail/Postfix
// options, the mode (-bm, -bp/mailq, -q, -bi/-I/newaliases) and the recipient arguments.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mta::sendmail {

enum class SendmailMode { deliver, list_queue, flush_queue, newaliases };

struct SendmailArgs {
    SendmailMode mode = SendmailMode::deliver;
    std::string config;           // -C/-c
    bool explicit_config = false;
    bool extract = false;         // -t
    bool dot_ends = true;         // cleared by -i / -oi
    bool have_sender = false;     // -f/-r given (possibly empty: the null sender)
    std::string sender, full_name;
    uint64_t notify = 0;          // -N, ipc::kNotify* bits (0: not given)
    uint8_t ret = 0;              // -R: 0 not given, 1 FULL, 2 HDRS
    std::string envid;            // -V
    std::vector<std::string> rcpts;  // recipient arguments, one address each (commas split)
};

// argv[0]'s base name selects the mode for "mailq" and "newaliases". Options may come after
// recipients (as with glibc getopt); "--" ends them. False with a one-line reason in err (EX_USAGE).
bool parse_sendmail_args(const std::vector<std::string>& argv, SendmailArgs& out, std::string& err);

// "-N never" or a comma-separated list of success, failure, delay (any case, spaces allowed).
bool parse_dsn_notify(const std::string& value, uint64_t& out);

}  // namespace mta::sendmail
