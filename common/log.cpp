// Logging backend: stderr lines "time ident[pid]: level=.. msg" or syslog(3).
#include "common/log.h"

#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <syslog.h>
#include <sys/time.h>
#include <unistd.h>

namespace mta::log {
namespace {
const char* g_ident = "mta";
bool g_stderr = true;
Level g_level = Level::info;

const char* name(Level l) {
    switch (l) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warn: return "warn";
    case Level::error: return "error";
    }
    return "?";
}
int prio(Level l) {
    switch (l) {
    case Level::debug: return LOG_DEBUG;
    case Level::info: return LOG_INFO;
    case Level::warn: return LOG_WARNING;
    case Level::error: return LOG_ERR;
    }
    return LOG_INFO;
}
}  // namespace

void init(const char* ident, bool to_stderr) {
    g_ident = ident;
    g_stderr = to_stderr;
    // LOG_NDELAY connects now, so logging keeps working after chroot.
    if (!to_stderr) openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void set_level(Level l) { g_level = l; }
Level level() { return g_level; }

bool parse_level(std::string_view s, Level& out) {
    for (Level l : {Level::debug, Level::info, Level::warn, Level::error})
        if (s == name(l)) { out = l; return true; }
    return false;
}

void write(Level l, const char* fmt, ...) {
    if (l < g_level) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!g_stderr) {
        syslog(prio(l), "level=%s %s", name(l), msg);
        return;
    }
    struct timeval tv;
    gettimeofday(&tv, nullptr);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char line[2300];
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s[%d]: level=%s %s\n",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     int(tv.tv_usec / 1000), g_ident, int(getpid()), name(l), msg);
    if (n < 0) return;
    if (size_t(n) >= sizeof line) { n = sizeof line - 1; line[n - 1] = '\n'; }
    // One write(2) per line keeps lines from different processes whole on a shared stderr.
    ssize_t r = ::write(2, line, size_t(n));
    (void)r;
}

std::string safe(std::string_view s) {
    static const char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(s.size());
    for (unsigned char c : s) {
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"') {
            out.push_back(char(c));
        } else {
            out += "\\x";
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 15]);
        }
    }
    return out;
}

}  // namespace mta::log
