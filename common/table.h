// Lookup tables (auth_users, local_recipients, aliases, virtual maps): read-only LMDB files built by
// mtamap and replaced atomically by rename, never written in place. Trusts the file only as far as
// LMDB does; values are checked by their users. Source parsing and password hashing live here too.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mta::table {

// A table opened read-only (MDB_RDONLY | MDB_NOSUBDIR | MDB_NOLOCK: no lock file is needed, because
// the file we map is never modified; a new version arrives as a new inode under the same name).
class Table {
public:
    static std::unique_ptr<Table> open(const std::string& path, std::string& err);
    ~Table();
    Table(const Table&) = delete;
    Table& operator=(const Table&) = delete;

    std::optional<std::string> lookup(std::string_view key) const;
    // Every entry in key order, at most `max` of them (false with err past that, or on an LMDB error).
    // For tables read whole at start-up (dkim_keys).
    bool entries(std::vector<std::pair<std::string, std::string>>& out, std::size_t max, std::string& err) const;
    // True when the file we mapped is no longer the one under its name: unlinked or renamed over
    // (checked on the open fd, so it also works inside a chroot where the name cannot be resolved),
    // or, when the name still resolves, a different inode or mtime.
    bool replaced() const;
    const std::string& path() const { return path_; }

private:
    Table() = default;
    struct Env;
    std::unique_ptr<Env> env_;
    std::string path_;
    dev_t dev_ = 0;
    ino_t ino_ = 0;
    int64_t mtime_ns_ = 0;
};

using Entries = std::vector<std::pair<std::string, std::string>>;

// Writes `entries` as a new LMDB file at `path`: built in a temporary file beside it, synced, renamed
// over `path`, and the directory synced. Readers holding the old file keep a consistent view.
bool write_table(const std::string& path, const Entries& entries, mode_t mode, std::string& err);

enum class Kind { auth, aliases, virtual_map, recipients, transport, tls_policy, dkim, destination_policy,
                  source_addresses, sender_pools };
std::optional<Kind> parse_kind(std::string_view s);

// Parses a source text. Formats (one entry a line, '#' comments, blank lines ignored):
//   auth:       user:password      (a password that already is a $6$/$y$/$2b$ crypt hash is kept)
//   aliases:    name: target, target...
//   virtual:    address target...
//               (aliases/virtual keys and targets are checked by alias::check_entry: addresses only)
//   recipients: address-or-localpart [anything]
//   transport:  domain|.domain|* transport:nexthop   (values checked by common/routing parse_transport)
//   tls_policy: domain|.domain|* level                (none, may, encrypt, dane, mta-sts)
//   destination_policy: domain|.domain|*|[host]|[host]:port|mx:host|mx:.suffix max_connections=N max_per_minute=N
//               max_per_hour=N adaptive=yes|no pool=NAME,... class=NAME
//               (checked by common/routing parse_destination_policy)
//   source_addresses: IPv4|IPv6 address helo=NAME pool=NAME,... warmup=N,N,...
//               (checked by parse_source_address; the key must be written in canonical form)
//   sender_pools: domain|.domain|* pool[,pool...]    (sender domain -> source pools, parse_pool_list)
//   dkim:       domain selector rsa|ed25519 /absolute/keyfile
//               (key "domain selector", value "rsa|ed25519 keyfile origin:line" so that a key that will not
//               load is reported where the admin wrote it; origin is `origin`, "line" when empty)
// Keys of aliases/virtual/recipients are lower-cased; auth keys are kept as written. Errors are
// "line N: message". Passwords are hashed with `hash` (injected so tests need no randomness).
bool parse_source(std::string_view text, Kind kind, Entries& out, std::vector<std::string>& errors,
                  std::string (*hash)(const std::string& password), std::string_view origin = "");

// crypt(3) SHA-512 ("$6$" + 16 random salt characters from getrandom). Empty on failure.
std::string hash_password(const std::string& password);
// crypt_r and a constant-time compare. False for an empty or malformed hash.
bool verify_password(const std::string& password, const std::string& hash);
// Does `s` look like a crypt hash we accept as is ($6$, $5$, $y$, $2b$, $gy$)?
bool looks_hashed(std::string_view s);

}  // namespace mta::table
