// Notifications (DSNs) for delivery results, made inside the group commit, and the body reading they
// share with `mtaqueue show`.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/config.h"
#include "queue-manager/clock.h"
#include "queue-manager/store.h"

namespace mta::queue {

// For the result ops that ask for a DSN: writes each DSN's body file into body_dir_fd and appends its
// message and recipient to `out`. Returns the new messages' ids (none when their files could not be
// made durable). The DSNs' dates are on the wall clock; what is stored, in the clock's queue time.
std::vector<uint64_t> make_notifications(Store& store, int body_dir_fd, const Config& cfg, const Clock& clock,
                                         const std::vector<Op>& results, std::vector<Op>& out);

// Up to `limit` bytes of a body file ("" if it is unreadable or not a plain file).
std::string read_body_prefix(int body_dir_fd, uint64_t msgid, std::size_t limit);

}  // namespace mta::queue
