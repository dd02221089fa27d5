// Copies the tables mta-queue needs into its chroot (see publish.h). mtad is root and the directory's
// parent belongs to the queue user, so everything below works on a directory fd opened without
// following symlinks and checked to be ours: a compromised queue cannot aim these writes elsewhere.
#include "master/publish.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file_util.h"
#include "common/log.h"
#include "common/table.h"

namespace mta::master {
namespace {

int64_t mtime_ns(const struct stat& st) { return int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec; }

bool copy_fd(int in, int out, uint64_t& bytes) {
    char buf[65536];
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return false;
        if (n == 0) return true;
        if (!write_all(out, std::string_view(buf, std::size_t(n)))) return false;
        bytes += uint64_t(n);
    }
}

}  // namespace

void TablePublisher::on_timer(int, short, void* arg) { static_cast<TablePublisher*>(arg)->sync(); }

void TablePublisher::configure(const Config& cfg) {
    if (dir_.empty()) dir_ = queue_dir(cfg) + "/tables";  // the queue's chroot moves only on restart
    for (auto& e : entries_) {
        const std::string key = e.key;
        const std::string& src = key == "transport_map"         ? cfg.transport_map
                                 : key == "smtp_tls_policy_map" ? cfg.smtp_tls_policy_map
                                 : key == "destination_policy"  ? cfg.destination_policy
                                 : key == "source_addresses"    ? cfg.source_addresses
                                                                : cfg.sender_source_pools;
        if (src == e.source) continue;
        e.source = src;
        e.size = -1;  // publish afresh even if the new source has the old one's identity
        e.problem.clear();
    }
}

bool TablePublisher::open_dir() {
    if (mkdir(dir_.c_str(), 0755) != 0 && errno != EEXIST) {
        LOG_ERROR("event=table_publish_failed dir=%s reason=\"mkdir: %s\"", log::safe(dir_).c_str(), strerror(errno));
        return false;
    }
    dir_fd_.reset(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    struct stat st {};
    if (!dir_fd_ || fstat(dir_fd_.get(), &st) != 0 || st.st_uid != geteuid() || (st.st_mode & 022)) {
        LOG_ERROR("event=table_publish_failed dir=%s reason=\"not a directory owned by uid %d without group/other "
                  "write access\"", log::safe(dir_).c_str(), int(geteuid()));
        dir_fd_.reset();
        return false;
    }
    if ((st.st_mode & 07777) != 0755) fchmod(dir_fd_.get(), 0755);
    return true;
}

void TablePublisher::sync() {
    if (dir_.empty()) return;
    dir_fd_.reset();  // reopened per sync: the spool may have been recreated under us
    for (auto& e : entries_) {
        if (e.source.empty()) {
            if (e.published || e.size == -1) unpublish(e, "");
            e.size = -2;  // nothing to do until configure() sets a source
            continue;
        }
        struct stat st {};
        if (stat(e.source.c_str(), &st) != 0) {
            unpublish(e, e.source + ": " + strerror(errno));
            continue;
        }
        if (e.published && st.st_dev == e.dev && st.st_ino == e.ino && mtime_ns(st) == e.mtime_ns && st.st_size == e.size)
            continue;
        publish(e);
    }
}

void TablePublisher::fail(Entry& e, const std::string& why) {
    if (why == e.problem) return;
    e.problem = why;
    LOG_ERROR("event=table_unavailable table=%s source=%s reason=\"%s\" effect=\"mta-queue defers mail that needs it\"",
              e.key, log::safe(e.source).c_str(), log::safe(why).c_str());
}

void TablePublisher::unpublish(Entry& e, const std::string& why) {
    if (!why.empty()) fail(e, why);
    if ((dir_fd_ || open_dir()) && unlinkat(dir_fd_.get(), (std::string(e.key) + ".lmdb").c_str(), 0) == 0)
        LOG_INFO("event=table_unpublished table=%s", e.key);
    e.published = false;
    e.size = -1;
}

void TablePublisher::publish(Entry& e) {
    UniqueFd src(::open(e.source.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
    struct stat st {};
    if (!src || fstat(src.get(), &st) != 0) return unpublish(e, e.source + ": " + strerror(errno));
    if (!S_ISREG(st.st_mode)) return unpublish(e, "not a regular file");
    std::string err;
    if (!table::Table::open(e.source, err))
        return unpublish(e, "not an LMDB table (build it with mtamap): " + err);
    if (!dir_fd_ && !open_dir()) return;
    std::string name = std::string(e.key) + ".lmdb", tmp = name + ".tmp";
    unlinkat(dir_fd_.get(), tmp.c_str(), 0);
    UniqueFd out(openat(dir_fd_.get(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
    uint64_t bytes = 0;
    bool ok = out && copy_fd(src.get(), out.get(), bytes) && fchmod(out.get(), 0644) == 0 && fsync(out.get()) == 0;
    int saved = errno;
    out.reset();
    if (!ok || renameat(dir_fd_.get(), tmp.c_str(), dir_fd_.get(), name.c_str()) != 0) {
        if (ok) saved = errno;
        unlinkat(dir_fd_.get(), tmp.c_str(), 0);
        // The old copy stays: it is still a consistent table, and the next check tries again.
        fail(e, "copy into " + dir_ + ": " + strerror(saved));
        return;
    }
    e.published = true;
    e.dev = st.st_dev;
    e.ino = st.st_ino;
    e.mtime_ns = mtime_ns(st);
    e.size = st.st_size;
    if (!e.problem.empty()) LOG_INFO("event=table_available table=%s", e.key);
    e.problem.clear();
    LOG_INFO("event=table_published table=%s source=%s bytes=%llu", e.key, log::safe(e.source).c_str(),
             (unsigned long long)bytes);
}

}  // namespace mta::master
