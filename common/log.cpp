// Logging backend: stderr lines "time ident[pid]: level=.. msg" or syslog(3).
#include "common/log.h"

#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <syslog.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/json.h"

namespace mta::log {
namespace {
const char* g_ident = "mta";
bool g_stderr = true;
bool g_json = false;
Level g_level = Level::info;

bool key_char(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'; }

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
void set_json(bool on) { g_json = on; }

void configure(std::string_view level, std::string_view format) {
    Level l;
    if (parse_level(level, l)) set_level(l);
    set_json(format == "json");
}

std::string kv_to_json_members(std::string_view msg) {
    std::string out;
    std::size_t i = 0;
    while (i < msg.size()) {
        while (i < msg.size() && msg[i] == ' ') i++;
        if (i == msg.size()) break;
        std::size_t eq = i;
        while (eq < msg.size() && key_char(msg[eq])) eq++;
        if (eq == i || eq == msg.size() || msg[eq] != '=') return "\"msg\":" + json_string(msg);
        std::string_view key = msg.substr(i, eq - i), value;
        std::size_t v = eq + 1;
        if (v < msg.size() && msg[v] == '"') {  // log::safe keeps quotes out of quoted values
            std::size_t close = msg.find('"', v + 1);
            if (close == std::string_view::npos) return "\"msg\":" + json_string(msg);
            value = msg.substr(v + 1, close - v - 1);
            i = close + 1;
        } else {
            std::size_t end = msg.find(' ', v);
            if (end == std::string_view::npos) end = msg.size();
            value = msg.substr(v, end - v);
            i = end;
        }
        if (!out.empty()) out += ",";
        out += json_string(key) + ":" + json_string(value);
    }
    return out;
}
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
        if (g_json) {
            std::string members = kv_to_json_members(msg);
            syslog(prio(l), "{\"level\":\"%s\"%s%s}", name(l), members.empty() ? "" : ",", members.c_str());
        } else {
            syslog(prio(l), "level=%s %s", name(l), msg);
        }
        return;
    }
    struct timeval tv;
    gettimeofday(&tv, nullptr);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char line[8192];
    int n;
    if (g_json) {
        std::string members = kv_to_json_members(msg);
        n = snprintf(line, sizeof line,
                     "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\",\"ident\":\"%s\",\"pid\":%d,\"level\":\"%s\"%s%s}\n",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     int(tv.tv_usec / 1000), g_ident, int(getpid()), name(l), members.empty() ? "" : ",",
                     members.c_str());
        if (n < 0 || size_t(n) >= sizeof line) return;  // never a cut (invalid) JSON line: msg is < 2 KiB
    } else {
        n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s[%d]: level=%s %s\n",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     int(tv.tv_usec / 1000), g_ident, int(getpid()), name(l), msg);
        if (n < 0) return;
        if (size_t(n) >= sizeof line) { n = sizeof line - 1; line[n - 1] = '\n'; }
    }
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
