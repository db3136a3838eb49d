#include "tests/support/process.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace gw::test {

child_process::child_process(std::vector<std::string> argv, const std::string& ready_word)
{
    int pipefd[2];
    if (::pipe(pipefd) != 0) throw std::runtime_error("pipe failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, pipefd[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, pipefd[0]);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    int rc = posix_spawnp(&pid_, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(pipefd[1]);
    out_fd_ = pipefd[0];
    if (rc != 0) throw std::runtime_error("cannot start " + argv[0]);
    if (ready_word.empty()) return;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    std::string line;
    while (std::chrono::steady_clock::now() < deadline) {
        pollfd p{out_fd_, POLLIN, 0};
        if (::poll(&p, 1, 100) <= 0) continue;
        char c;
        if (::read(out_fd_, &c, 1) != 1) break;
        if (c != '\n') {
            line.push_back(c);
            continue;
        }
        if (line.find(ready_word) != std::string::npos) {
            ready_line_ = line;
            return;
        }
        line.clear();
    }
    kill();
    throw std::runtime_error(argv[0] + " did not become ready");
}

child_process::~child_process()
{
    kill();
    if (out_fd_ >= 0) ::close(out_fd_);
}

int child_process::terminate()
{
    if (pid_ <= 0) return 0;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

void child_process::kill()
{
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
}

std::uint16_t free_port()
{
    boost::asio::io_context io;
    boost::asio::ip::tcp::acceptor a(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
    return a.local_endpoint().port();
}

running_redis::running_redis() : port_(free_port())
{
    start();
}

running_redis::~running_redis() = default;

void running_redis::start()
{
    proc_ = std::make_unique<child_process>(
        std::vector<std::string>{"redis-server", "--port", std::to_string(port_), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--loglevel", "notice"},
        "Ready to accept connections");
}

void running_redis::stop()
{
    proc_.reset();
}

std::string running_redis::cli(const std::string& args) const
{
    std::string cmd = "redis-cli -p " + std::to_string(port_) + " " + args + " 2>&1";
    std::string out;
    FILE* f = ::popen(cmd.c_str(), "r");
    if (!f) return out;
    char buf[256];
    while (std::fgets(buf, sizeof buf, f)) out += buf;
    ::pclose(f);
    return out;
}

} // namespace gw::test
