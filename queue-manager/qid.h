// Queue ids as humans see them (also the body file names): common/wire's format, in the queue's namespace.
#pragma once
#include <string_view>

#include "common/wire/limits.h"

namespace mta::queue {

// The one file in the body directory that is no body: an empty file whose O_PATH descriptor mta-smtpd
// gets for fstatvfs (spool_probe), so that it can check free space from inside its empty chroot.
inline constexpr std::string_view kSpaceProbe = "space-probe";

using wire::format_qid;  // the one queue id format (common/wire/limits.h)
using wire::parse_qid;

}  // namespace mta::queue
