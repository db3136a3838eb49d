// dify-gateway entry point: everything lives in gateway/ops/cli.cpp so tests can run it.
#include "gateway/ops/cli.hpp"

#include <iostream>

int main(int argc, char** argv)
{
    std::vector<std::string> args(argv + 1, argv + argc);
    return gw::gateway::run_cli(args, std::cout, std::cerr);
}
