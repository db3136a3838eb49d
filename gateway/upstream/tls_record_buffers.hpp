// OpenSSL's record buffers, and the small blocks it takes per record, recycled per thread.
//
// Every TLS connection runs with SSL_MODE_RELEASE_BUFFERS (see tls_socket.hpp): OpenSSL
// frees a connection's ~17 KiB read or write buffer as soon as no record is pending in
// it, so an idle or slowly streaming connection holds none. The price is a malloc and a
// free of a block that size for most records, and glibc serves blocks that large from its
// bins, not its per-thread cache (a large request first consolidates the fast bins). This
// file gives OpenSSL memory functions that keep blocks of that one size on a short
// per-thread free list instead: a worker's connections share the few buffers in use at
// any moment, the way nginx's connections share its buffers, and the per-connection
// memory stays what RELEASE_BUFFERS makes it.
//
// OpenSSL 3.0 also allocates a 40-byte block (a WPACKET's sub-packet state) for every
// record it writes or reads and frees it at once: one malloc per relayed SSE event. Blocks
// of that size class are kept on a second per-thread list, so a steady stream allocates
// nothing per event.
//
// The functions are installed before main() (OpenSSL accepts them only before its first
// allocation; Asio's headers initialise OpenSSL from static constructors), by a constructor
// in this file's object: a program gets it when it calls tls_record_buffers_recycled()
// (the gateway's start does, and warns when OpenSSL refused them). Everything else goes to
// malloc, realloc and free unchanged. Blocks are handed back on the thread that frees
// them; a thread's list is emptied when the thread ends, and a block freed after that
// goes to free(). Sanitizer builds leave OpenSSL's allocator alone, so that they still see
// a use of a freed record buffer.
#pragma once

#include <cstddef>

namespace gw::gateway {

// Whether OpenSSL took the recycling functions (false in sanitizer builds, or if something
// allocated through OpenSSL before they could be installed: then OpenSSL uses malloc).
bool tls_record_buffers_recycled();
// Whether OpenSSL refused them (it had allocated already): worth a warning. Sanitizer
// builds do not offer them, so there it is false.
bool tls_record_buffers_refused();

// The size a recycled block is made with; OpenSSL's record buffers (16 KiB of plaintext
// plus the record's header, MAC and padding room) fit in it.
inline constexpr std::size_t tls_record_block_size = 18 * 1024;
// Requests above this size (and up to tls_record_block_size) are served from the list.
inline constexpr std::size_t tls_record_block_floor = 16 * 1024;
// Blocks kept per thread: enough for the records in flight on one worker at once.
inline constexpr std::size_t tls_record_blocks_per_thread = 16;

// Small blocks: requests of more than tls_packet_block_floor and up to
// tls_packet_block_size bytes are served from the second list, and any freed block of
// that size class (by its usable size) joins it.
inline constexpr std::size_t tls_packet_block_floor = 24;
inline constexpr std::size_t tls_packet_block_size = 40;
inline constexpr std::size_t tls_packet_blocks_per_thread = 64;

// The calling thread's free lists, for tests: how many blocks each holds now.
std::size_t tls_record_blocks_kept();
std::size_t tls_packet_blocks_kept();

} // namespace gw::gateway
