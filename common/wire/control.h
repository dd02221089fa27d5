// Messages between mtad and its roles that are not about one mail: the link handshake (hello), config,
// peer, listen, stop, loglevel, the admin and resolver requests, and the anvil connection counting.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/fd.h"
#include "common/ipc.h"
#include "common/metrics.h"

namespace mta::wire {

inline constexpr std::size_t kMaxRoleName = 32;
inline constexpr std::size_t kMaxPathName = 4096;      // config file name
inline constexpr std::size_t kMaxDnsName = 1024;       // resolve_request name (presentation form; a bad name is
                                                       // the resolver's to answer, so "" passes)
inline constexpr std::size_t kMaxDnsRecords = 100;             // records in one resolve_reply
inline constexpr std::size_t kMaxDnsRecordBytes = 128 * 1024;  // all its records together, under ipc::kMaxMessage
inline constexpr std::size_t kMaxDnsText = 1000;       // resolve_reply's explanation
inline constexpr std::size_t kMaxClientAddr = 64;      // numeric IPv4/IPv6 text

struct Hello { uint64_t version = ipc::kProtocolVersion; std::string role; };
struct Config {
    std::string text;        // the configuration file's text (re-parsed by the child)
    std::string name;        // where it came from, for error messages ("" = built-in default)
    bool has_pem = false;    // smtpd only: the certificate and key below travel (as a pair)
    std::string tls_cert_pem, tls_key_pem;
};
struct Peer { std::string role; uint64_t instance = 0; UniqueFd fd; };
struct Listen { std::string kind; UniqueFd fd; };  // kind: smtp | submission | smtps
struct Stop {};
struct LogLevel { std::string level; };            // debug | info | warn | error

struct ResolveRequest { std::string name; uint64_t qtype = 0; };
struct ResolveReply {
    uint64_t rcode = 0;
    uint64_t dnssec = 0;     // ipc::DnssecStatus
    std::string text;
    std::vector<std::string> records;
};

struct AdminRequest { std::string text; uint64_t uid = 0; bool privileged = false; };
struct AdminReply { std::string text; bool more = false; };  // one chunk; `more` = another follows

struct AdminMore { bool go_on = true; };  // false: the tool went away
struct StatsRequest {};
// A role's metrics (common/metrics.h). The decoder checks sizes only; mtad checks every sample against
// the catalogue when it adds them up.
inline constexpr std::size_t kMaxStatsSamples = 2048;
struct StatsReply { std::vector<metrics::Sample> samples; };

struct AnvilConnect { std::string client_addr; std::string listen_kind; };
struct AnvilVerdict {
    uint64_t status = 0;  // ipc::AnvilStatus
    uint64_t concurrent = 0, rate = 0, auth_failures = 0;
};
struct AnvilDisconnect {};  // the reqid names the connection
struct AnvilAuthFail { std::string client_addr; };
struct AnvilAuthCount { std::string client_addr; uint64_t auth_failures = 0; };
// smtpd -> master: connect milter `index` of smtpd_milters, whose spec the smtpd has as `spec` (mtad
// refuses a pair that does not match its own config: the smtpd never names what mtad opens).
struct MilterConnect { uint64_t index = 0; std::string spec; };
struct MilterSocket { UniqueFd fd; };  // master -> smtpd: the socket, connected or connecting
inline constexpr std::size_t kMaxMilterSpec = 256;

ipc::Message encode(const Hello& h, uint64_t reqid = 0);
bool decode(const ipc::Message& m, Hello& out, std::string& err);  // also checks the protocol version
ipc::Message encode(const Config& c, uint64_t reqid = 0);
bool decode(const ipc::Message& m, Config& out, std::string& err);
ipc::Message encode(Peer& p, uint64_t reqid = 0);       // moves the fd
bool decode(ipc::Message& m, Peer& out, std::string& err);  // moves the fd out
ipc::Message encode(Listen& l, uint64_t reqid = 0);     // moves the fd
bool decode(ipc::Message& m, Listen& out, std::string& err);
ipc::Message encode(const Stop&, uint64_t reqid = 0);
bool decode(const ipc::Message& m, Stop& out, std::string& err);
ipc::Message encode(const LogLevel& l, uint64_t reqid = 0);
bool decode(const ipc::Message& m, LogLevel& out, std::string& err);
ipc::Message encode(const ResolveRequest& r, uint64_t reqid);
bool decode(const ipc::Message& m, ResolveRequest& out, std::string& err);
ipc::Message encode(const ResolveReply& r, uint64_t reqid);
bool decode(const ipc::Message& m, ResolveReply& out, std::string& err);
ipc::Message encode(const AdminRequest& r, uint64_t reqid);
bool decode(const ipc::Message& m, AdminRequest& out, std::string& err);
ipc::Message encode(const AdminReply& r, uint64_t reqid);
// A text answer (or, with last = false, a part of one) as admin_reply messages of at most `chunk` octets
// of text each, `more` set on all but the last of a whole answer; "" is one empty message.
std::vector<ipc::Message> encode_admin_chunks(std::string_view text, uint64_t reqid, std::size_t chunk, bool last = true);
bool decode(const ipc::Message& m, AdminReply& out, std::string& err);
ipc::Message encode(const AdminMore& r, uint64_t reqid);
bool decode(const ipc::Message& m, AdminMore& out, std::string& err);
ipc::Message encode(const StatsRequest&, uint64_t reqid);
bool decode(const ipc::Message& m, StatsRequest& out, std::string& err);
ipc::Message encode(const StatsReply& r, uint64_t reqid);
bool decode(const ipc::Message& m, StatsReply& out, std::string& err);
ipc::Message encode(const AnvilConnect& a, uint64_t reqid);
bool decode(const ipc::Message& m, AnvilConnect& out, std::string& err);
ipc::Message encode(const AnvilVerdict& a, uint64_t reqid);
bool decode(const ipc::Message& m, AnvilVerdict& out, std::string& err);
ipc::Message encode(const AnvilDisconnect&, uint64_t reqid);
bool decode(const ipc::Message& m, AnvilDisconnect& out, std::string& err);
ipc::Message encode(const AnvilAuthFail& a, uint64_t reqid);
bool decode(const ipc::Message& m, AnvilAuthFail& out, std::string& err);
ipc::Message encode(const AnvilAuthCount& a, uint64_t reqid);
bool decode(const ipc::Message& m, AnvilAuthCount& out, std::string& err);
ipc::Message encode(const MilterConnect& c, uint64_t reqid);
bool decode(const ipc::Message& m, MilterConnect& out, std::string& err);
ipc::Message encode(MilterSocket& s, uint64_t reqid);   // moves the fd
bool decode(ipc::Message& m, MilterSocket& out, std::string& err);  // moves the fd out

}  // namespace mta::wire
