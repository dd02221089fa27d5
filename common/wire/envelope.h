// The envelope of one mail as it travels between roles: the same facts in smtpd's commit to the queue
// and in the queue's deliver request, encoded and decoded by one pair of functions (fields.h).
#pragma once
#include <cstdint>
#include <string>

namespace mta::wire {

struct Envelope {
    std::string sender;      // "" = null reverse path
    uint64_t size = 0;       // commit: SIZE= declared by the client; deliver: measured by the queue (0 = unknown)
    uint64_t body_type = 0;  // 0 7bit, 1 8bitmime, 2 binarymime
    bool smtputf8 = false;
    std::string envid;       // DSN ENVID, "" = not given
    uint64_t ret = 0;        // 0 default, 1 FULL, 2 HDRS
    bool requiretls = false;
};

}  // namespace mta::wire
