// Maildir delivery for mta-local: unique file names, CRLF->LF conversion and the durable
// tmp/ -> new/ write. Trusts its caller (local_agent) for the already-validated mailbox name.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "common/protocol.h"

namespace mta::local {

// Streaming CRLF -> LF: a CR followed by LF becomes LF, a lone CR is kept. A CRLF split across
// two chunks is handled by remembering the trailing CR.
class CrlfToLf {
public:
    void feed(std::string_view in, std::string& out);
    void finish(std::string& out);  // flushes a CR that ended the input

private:
    bool pending_cr_ = false;
};

// Host name as it goes into a Maildir file name: '/' -> "\057", ':' -> "\072".
std::string maildir_hostname(std::string_view host);

// "<secs>.M<usecs>P<pid>Q<counter>.<host>" (host already escaped).
std::string maildir_unique(uint64_t secs, uint64_t usecs, uint64_t pid, uint64_t counter,
                           std::string_view escaped_host);

// Outcome of one attempt, ready for deliver_result: status plus "x.y.z text".
struct Outcome {
    ipc::DeliveryStatus status = ipc::DeliveryStatus::deferred;
    std::string text;
    std::string file;  // "<name>/new/<unique>,S=<size>" when delivered
};

// An errno from a filesystem step becomes deferred (ENOSPC, EDQUOT, EIO and anything unknown or
// admin-fixable) or bounced (ENAMETOOLONG, EFBIG: retrying cannot help).
Outcome failure_outcome(int err, std::string_view what);

// Inputs of one Maildir write. `root_fd` is an open directory fd of mail_dir; `mailbox` a name that
// maildir_name() accepted; `header` goes first (e.g. "Return-Path: <a@b>\n"); the body is read with
// pread() from offset 0 of `body_fd`, so the same fd can serve many recipients.
struct MaildirWrite {
    int root_fd = -1;
    std::string mailbox;
    std::string header;
    int body_fd = -1;
    std::string unique;  // from maildir_unique(); the tmp/ name, new/ adds ",S=<size>"
};

// Creates <mailbox>/{tmp,new,cur} (0700) if missing, writes tmp/<unique>, fsyncs it, renames it to
// new/<unique>,S=<size> and fsyncs new/. Reports delivered only once the file is durable; on any
// failure the partial file is removed. Never follows symbolic links inside mail_dir.
Outcome write_maildir(const MaildirWrite& w);

}  // namespace mta::local
