// Pure functions over DNS bytes for mta-resolver: query-name validation and wire-format RDATA to
// presentation text. They trust nothing: every length is bounds-checked, nothing does I/O.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mta::resolver {

// The record types the MTA asks for; anything else is refused at the IPC boundary.
inline constexpr uint16_t kTypeA = 1, kTypePTR = 12, kTypeMX = 15, kTypeTXT = 16, kTypeAAAA = 28, kTypeTLSA = 52;

inline constexpr std::size_t kMaxNameText = 255;     // presentation form, without the trailing dot
inline constexpr std::size_t kMaxWireName = 255;     // RFC 1035 limit on the wire
inline constexpr std::size_t kMaxLabel = 63;
inline constexpr std::size_t kMaxRecordText = 4000;  // longer records are not passed on

bool supported_qtype(uint64_t qtype);
const char* qtype_name(uint16_t qtype);

// A query name as the MTA may ask it: LDH/underscore labels of 1..63 bytes, at most 255 bytes,
// one optional trailing dot. Returns the lower-cased name without the trailing dot, or nullopt.
std::optional<std::string> normalize_name(std::string_view in);

// Decodes an uncompressed wire-format domain name starting at `off` (advanced past it on success).
// Compression pointers and non-LDH/underscore bytes are refused. The root name becomes ".".
std::optional<std::string> decode_wire_name(std::string_view wire, std::size_t& off);

// One RDATA of type `qtype` to the text passed on over IPC:
//   A "192.0.2.1"; AAAA "2001:db8::1"; MX "10 mx.example.com" (null MX "0 ."); TLSA "3 1 1 <hex>";
//   TXT the concatenated character-strings; PTR "host.example".
// nullopt when the RDATA is truncated, has trailing bytes, holds an invalid name or exceeds kMaxRecordText.
std::optional<std::string> rdata_to_text(uint16_t qtype, std::string_view rdata);

}  // namespace mta::resolver
