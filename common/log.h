// One-line key=value event logging to stderr (foreground) or syslog (daemon).
#pragma once
#include <string>
#include <string_view>

namespace mta::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

void init(const char* ident, bool to_stderr);
void set_level(Level l);
bool parse_level(std::string_view s, Level& out);
Level level();

void write(Level l, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// Escape anything that is not printable ASCII (and '"', '\\') as \xHH so remote-controlled text can
// never inject log lines or terminal escapes.
std::string safe(std::string_view s);

}  // namespace mta::log

#define LOG_DEBUG(...) do { if (::mta::log::level() <= ::mta::log::Level::debug) ::mta::log::write(::mta::log::Level::debug, __VA_ARGS__); } while (0)
#define LOG_INFO(...) ::mta::log::write(::mta::log::Level::info, __VA_ARGS__)
#define LOG_WARN(...) ::mta::log::write(::mta::log::Level::warn, __VA_ARGS__)
#define LOG_ERROR(...) ::mta::log::write(::mta::log::Level::error, __VA_ARGS__)
