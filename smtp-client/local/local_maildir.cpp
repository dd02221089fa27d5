// Maildir delivery: the tmp/ -> new/ protocol with fsyncs so "delivered" means durable.
// Works only through directory fds opened with O_NOFOLLOW below mail_dir; trusts the caller's name.
#include "smtp-client/local/local_maildir.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fault.h"
#include "common/fd.h"
#include "common/file_util.h"

namespace mta::local {
namespace {

constexpr size_t kChunk = 64 * 1024;

// Opens (creating if missing, mode 0700) directory `name` under `parent`. A directory we create is
// made durable by fsync'ing its parent. Returns 0 or an errno.
int open_or_create_dir(int parent, const std::string& name, UniqueFd& out) {
    bool created = false;
    if (mkdirat(parent, name.c_str(), 0700) == 0) created = true;
    else if (errno != EEXIST) return errno;
    out.reset(openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!out) return errno;
    if (created && fsync(parent) != 0) return errno;
    return 0;
}

// Header, then the body converted to LF line ends. Sets `size` to the bytes written.
Outcome copy_message(const MaildirWrite& w, int out_fd, const std::string& path, uint64_t& size) {
    if (!write_all(out_fd, w.header)) return failure_outcome(errno, "write " + path);
    size = w.header.size();
    std::string in(kChunk, '\0'), out;
    out.reserve(kChunk);
    CrlfToLf conv;
    off_t off = 0;
    for (;;) {
        ssize_t n = pread(w.body_fd, in.data(), in.size(), off);
        if (n < 0) {
            if (errno == EINTR) continue;
            return failure_outcome(errno, "read queue file");
        }
        out.clear();
        if (n == 0) conv.finish(out);
        else conv.feed(std::string_view(in.data(), size_t(n)), out);
        if (!write_all(out_fd, out)) return failure_outcome(errno, "write " + path);
        size += out.size();
        if (n == 0) break;
        off += n;
    }
    return Outcome{ipc::DeliveryStatus::delivered, {}, {}};
}

// rename() that refuses to replace an existing new/ entry where the filesystem supports it.
int rename_noreplace(int from_dir, const std::string& from, int to_dir, const std::string& to) {
    if (renameat2(from_dir, from.c_str(), to_dir, to.c_str(), RENAME_NOREPLACE) == 0) return 0;
    if (errno != EINVAL && errno != ENOSYS) return errno;
    return renameat(from_dir, from.c_str(), to_dir, to.c_str()) == 0 ? 0 : errno;
}

}  // namespace

void CrlfToLf::feed(std::string_view in, std::string& out) {
    for (char c : in) {
        if (pending_cr_) {
            pending_cr_ = false;
            if (c == '\n') { out.push_back('\n'); continue; }
            out.push_back('\r');
        }
        if (c == '\r') pending_cr_ = true;
        else out.push_back(c);
    }
}

void CrlfToLf::finish(std::string& out) {
    if (pending_cr_) out.push_back('\r');
    pending_cr_ = false;
}

std::string maildir_hostname(std::string_view host) {
    std::string out;
    for (char c : host) {
        if (c == '/') out += "\\057";
        else if (c == ':') out += "\\072";
        else out.push_back(c);
    }
    return out;
}

std::string maildir_unique(uint64_t secs, uint64_t usecs, uint64_t pid, uint64_t counter,
                           std::string_view escaped_host) {
    char buf[96];
    snprintf(buf, sizeof buf, "%llu.M%lluP%lluQ%llu.", (unsigned long long)secs, (unsigned long long)usecs,
             (unsigned long long)pid, (unsigned long long)counter);
    return std::string(buf) + std::string(escaped_host);
}

Outcome failure_outcome(int err, std::string_view what) {
    std::string detail = std::string(what) + ": " + strerror(err);
    switch (err) {
    case ENAMETOOLONG: return {ipc::DeliveryStatus::bounced, "5.2.0 " + detail, {}};
    case EFBIG: return {ipc::DeliveryStatus::bounced, "5.3.4 " + detail, {}};
    case EDQUOT: return {ipc::DeliveryStatus::deferred, "4.2.2 " + detail, {}};
    default: return {ipc::DeliveryStatus::deferred, "4.3.0 " + detail, {}};
    }
}

Outcome write_maildir(const MaildirWrite& w) {
    UniqueFd box, tmp, cur, newd;
    if (int e = open_or_create_dir(w.root_fd, w.mailbox, box)) return failure_outcome(e, "open maildir " + w.mailbox);
    if (int e = open_or_create_dir(box.get(), "tmp", tmp)) return failure_outcome(e, "open " + w.mailbox + "/tmp");
    if (int e = open_or_create_dir(box.get(), "new", newd)) return failure_outcome(e, "open " + w.mailbox + "/new");
    if (int e = open_or_create_dir(box.get(), "cur", cur)) return failure_outcome(e, "open " + w.mailbox + "/cur");

    const std::string tmp_path = w.mailbox + "/tmp/" + w.unique;
    UniqueFd file(openat(tmp.get(), w.unique.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!file) return failure_outcome(errno, "create " + tmp_path);
    auto remove_tmp = [&](Outcome o) {
        unlinkat(tmp.get(), w.unique.c_str(), 0);
        return o;
    };

    uint64_t size = 0;
    Outcome copied = copy_message(w, file.get(), tmp_path, size);
    if (copied.status != ipc::DeliveryStatus::delivered) return remove_tmp(copied);
    if (fsync(file.get()) != 0) return remove_tmp(failure_outcome(errno, "fsync " + tmp_path));
    if (close(file.release()) != 0 && errno != EINTR) return remove_tmp(failure_outcome(errno, "close " + tmp_path));

    const std::string final_name = w.unique + ",S=" + std::to_string(size);
    const std::string new_path = w.mailbox + "/new/" + final_name;
    if (int e = rename_noreplace(tmp.get(), w.unique, newd.get(), final_name))
        return remove_tmp(failure_outcome(e, "rename to " + new_path));
    if (fsync(newd.get()) != 0) {
        // Not durable: take it back so the retry does not leave a second copy.
        int e = errno;
        unlinkat(newd.get(), final_name.c_str(), 0);
        return failure_outcome(e, "fsync " + w.mailbox + "/new");
    }
    MTA_CRASH_POINT("local.after_rename");  // in the Maildir, the queue not told
    return {ipc::DeliveryStatus::delivered, "2.0.0 delivered to maildir", new_path};
}

}  // namespace mta::local
