#include "common/file_util.h"

#include <algorithm>
#include <cerrno>
#include <fcntl.h>
#include <unistd.h>

#include "common/fd.h"

namespace mta {

bool read_file(const std::string& path, std::string& out, std::size_t max_bytes) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return false;
    out.clear();
    char buf[8192];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return false;
        if (n == 0) return true;
        if (std::size_t(n) > max_bytes - out.size()) return false;
        out.append(buf, std::size_t(n));
    }
}

bool write_all(int fd, std::string_view data) {
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return false;
        if (n == 0) { errno = EIO; return false; }
        data.remove_prefix(std::size_t(n));
    }
    return true;
}

bool copy_range(int in, int out, uint64_t from, uint64_t to) {
    std::string buf(std::size_t(std::min<uint64_t>(64 * 1024, to > from ? to - from : 1)), '\0');
    while (from < to) {
        std::size_t want = std::size_t(std::min<uint64_t>(buf.size(), to - from));
        ssize_t n = pread(in, buf.data(), want, off_t(from));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return false;
        if (n == 0) { errno = EIO; return false; }
        if (!write_all(out, std::string_view(buf.data(), std::size_t(n)))) return false;
        from += uint64_t(n);
    }
    return true;
}

}  // namespace mta
