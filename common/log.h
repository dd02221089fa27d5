// One-line event logging to stderr (foreground, or maillog_file which mtad puts on fd 2) or syslog
// (daemon, facility mail). Lines are key=value pairs (log_format = kv) or one JSON object each
// (log_format = json: the same pairs as string members, plus level, and time/ident/pid off syslog).
#pragma once
#include <string>
#include <string_view>

namespace mta::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

void init(const char* ident, bool to_stderr);
void set_level(Level l);
bool parse_level(std::string_view s, Level& out);
void set_json(bool on);
// log_level and log_format as the configuration has them (checked by the config parser).
void configure(std::string_view level, std::string_view format);
// A key=value message as a JSON object's members ("event":"x",...); text that is not key=value pairs
// becomes "msg". Exposed for tests.
std::string kv_to_json_members(std::string_view msg);
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
