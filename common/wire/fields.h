// The decoding toolkit behind every wire decoder: the one field-order rule and the typed field readers.
// Internal to common/wire/; roles use the per-message structs in wire.h instead.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "common/ipc.h"
#include "common/wire/envelope.h"

namespace mta::wire {

const char* tag_name(ipc::Tag t);

// What a message may hold. Message-level tags appear at most once each, anywhere. Per-recipient tags form
// groups: a group opens at the first per-recipient field, and a tag the open group already holds opens the
// next group, so every tag appears at most once per group. With a `leader`, a group must open with it.
struct Shape {
    std::initializer_list<ipc::Tag> once;
    std::initializer_list<ipc::Tag> group = {};
    std::optional<ipc::Tag> leader = std::nullopt;
    std::size_t max_groups = 0;
    std::size_t fds = 0;  // exact number of fds the message carries
};

class Fields {
public:
    using Group = std::vector<const ipc::Field*>;

    // Splits `m` by `shape`; false (with err) on a wrong type of fd count, an unknown or repeated tag,
    // a group opened by the wrong tag, or too many groups.
    bool split(const ipc::Message& m, ipc::Type type, const Shape& shape, std::string& err);

    const ipc::Field* get(ipc::Tag t) const;
    const std::vector<Group>& groups() const { return groups_; }

private:
    std::vector<const ipc::Field*> once_;
    std::vector<Group> groups_;
};

const ipc::Field* find(const Fields::Group& g, ipc::Tag t);

// Typed readers: `need_*` fail when the field is absent, `opt_*` leave `out` alone then. Failures say
// "missing X" or "bad X".
bool need_u64(const ipc::Field* f, ipc::Tag t, uint64_t max, uint64_t& out, std::string& err);
bool opt_u64(const ipc::Field* f, uint64_t max, uint64_t& out, std::string& err);
bool opt_bool(const ipc::Field* f, bool& out, std::string& err);
// Clean text (limits.h) of at most `max` octets; `nonempty` refuses "".
bool need_text(const ipc::Field* f, ipc::Tag t, std::size_t max, std::string& out, std::string& err,
               bool nonempty = false);
bool opt_text(const ipc::Field* f, std::size_t max, std::string& out, std::string& err, bool nonempty = false);
// Any bytes up to `max` (config text, PEM, DNS records: not line-oriented text).
bool need_bytes(const ipc::Field* f, ipc::Tag t, std::size_t max, std::string& out, std::string& err);
bool opt_bytes(const ipc::Field* f, std::size_t max, std::string& out, std::string& err);

// The envelope part of a message (envelope.h): sender always, the other facts when set. Its tags belong in
// the message's Shape::once list: sender, size, body_type, smtputf8, envid, ret, requiretls.
void add_envelope(ipc::Message& m, const Envelope& e);
bool get_envelope(const Fields& fs, Envelope& e, std::string& err);

}  // namespace mta::wire
