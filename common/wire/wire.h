// common/wire/: the one message layer between roles.
//
// What it owns: for every message that travels between mtad and its roles (types in common/protocol.h),
// one struct, one encoder (struct -> ipc::Message) and one strict decoder (ipc::Message -> struct, or
// false with a short error naming the field). The limits and text rules those messages share live in
// limits.h: the longest address, "clean text", the queue id format. The framing (header, field bytes,
// fds, ipc::Link) stays in common/ipc.*; this layer only gives fields their meaning.
//
// The rules every decoder follows (fields.h implements them once):
//  - the message type and the exact number of fds are checked first;
//  - a tag the message does not define is refused, never skipped;
//  - message-level fields appear at most once, in any order; required ones must be present;
//  - recipient-like fields form groups: a group opens at its first field (or only at a named leader tag),
//    a tag the open group already holds opens the next group, so each appears once per group;
//  - every number has a maximum, every string a length cap; text is "clean text" unless it is opaque
//    bytes by nature (config text, PEM, DNS records, admin text).
// Encoders trust their input, except where the input comes from outside the process (delivery result
// and fail texts are made clean and cut to size), so an encoded message always decodes.
// A failed decode means a hostile or broken peer: the receiving role treats it as malformed.
#pragma once

#include "common/wire/control.h"    // hello, config, peer, listen, stop, loglevel, resolve_*, admin_*, anvil_*
#include "common/wire/delivery.h"   // deliver, deliver_result
#include "common/wire/limits.h"     // shared limits, clean text, queue ids
#include "common/wire/msgauth.h"    // msgauth_request, msgauth_reply
#include "common/wire/reception.h"  // body_open(_ok), commit(_ok), abort, fail, spool_probe
