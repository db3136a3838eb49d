// Serving a request of the OpenAI-compatible front (/openai/v1) once its key is known:
// GET /models answers from the configuration; POST /chat/completions reads the body, finds
// the app its `model` names, admits the turn against the quotas, finds the Dify
// conversation its history continues, and hands Dify's request to forward_request.
#pragma once

#include "gateway/downstream/request_steps.hpp"

namespace gw::gateway {

net::awaitable<bool>
serve_openai(downstream_request& d, header_parser& hp, request_plan& plan, bool keep_alive);

} // namespace gw::gateway
