// Whole small files (certificates, keys, trust anchors) read into memory, and whole buffers written out.
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

}  // namespace mta
