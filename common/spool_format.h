// The queue's on-disk format mark, read by mta-queue (Store::open) and by mtad before it starts any
// role: LMDB db "meta", key "format", a little-endian u64 = the newest queue record version the writer
// knows (queue-manager/records.h kRecordVersion). A build reads every older format and marks the spool
// with its own when it opens it; it refuses a spool marked newer than it knows, untouched, so that a
// downgrade never quarantines records it cannot read. Spools written before the mark existed (record
// format 4 and older) have no key and count as format 4.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace mta {

inline constexpr uint64_t kQueueFormat = 5;
inline constexpr uint64_t kQueueFormatUnmarked = 4;  // a spool without the key
inline constexpr std::string_view kMetaFormatKey = "format";

// "queue format N in DIR is newer than this build reads (up to format M): ..." for a refusal.
std::string queue_format_refusal(uint64_t found, const std::string& dir);

// mtad's check of <spool>/queue/db before start-up, read-only and without LMDB's lock file (nothing
// else has the spool open yet). False only for a readable mark newer than kQueueFormat: a missing or
// damaged database is mta-queue's to refuse (mtad keeps running and SMTP answers 4xx).
bool check_queue_format(const std::string& db_dir, std::string& err);

}  // namespace mta
