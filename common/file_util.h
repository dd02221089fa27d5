// Whole small files (certificates, keys, trust anchors) read into memory, whole buffers written out, and
// ranges of one file copied into another.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace mta {

// The whole of `path` into `out`; false when it cannot be opened or read, or holds more than
// `max_bytes` bytes (then `out` is unspecified).
bool read_file(const std::string& path, std::string& out, std::size_t max_bytes = SIZE_MAX);

// All of `data` to the blocking descriptor `fd`, retrying short writes and EINTR; false with errno set
// (EIO when write(2) wrote nothing) on failure.
bool write_all(int fd, std::string_view data);

// Bytes [from, to) of `in` (read with pread, so its offset stays) appended to `out` with write_all;
// false with errno set on a read or write error, or EIO when `in` ends before `to`.
bool copy_range(int in, int out, uint64_t from, uint64_t to);

}  // namespace mta
