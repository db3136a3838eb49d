// libFuzzer: the config loader (JSONC reader, ${ENV} expansion, validation) on any text.
#include "config/loader.hpp"

#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    static const gw::config::env_lookup env = [](const std::string& name) -> std::optional<std::string> {
        if (name == "FUZZ") return std::string("value");
        return std::nullopt;
    };
    (void)gw::config::load_config_text(std::string_view(reinterpret_cast<const char*>(data), size), env);
    return 0;
}
