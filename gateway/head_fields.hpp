// The fields of the message heads a worker reads: a client's request head and Dify's
// reply head. Beast's basic_fields allocates one block per field (its name and value
// inline) and one for the start line, so a proxied request's two heads would cost about
// ten allocations; these heads take their blocks from the worker's recycled blocks
// (recycled_blocks.hpp) instead.
#pragma once

#include "gateway/recycled_blocks.hpp"

#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>

namespace gw::gateway {

using head_fields = boost::beast::http::basic_fields<block_allocator<char>>;
using request_head = boost::beast::http::request_header<head_fields>;
template <typename Body>
using client_request_parser = boost::beast::http::request_parser<Body, block_allocator<char>>;
template <typename Body>
using dify_reply_parser = boost::beast::http::response_parser<Body, block_allocator<char>>;

} // namespace gw::gateway
