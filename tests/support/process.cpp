#include "tests/support/process.hpp"

#include "tests/support/test_certs.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
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

namespace {

// What `cmd` (a shell command line) prints.
std::string output_of(const std::string& cmd)
{
    std::string out;
    FILE* f = ::popen(cmd.c_str(), "r");
    if (!f) return out;
    char buf[256];
    while (std::fgets(buf, sizeof buf, f)) out += buf;
    ::pclose(f);
    return out;
}

} // namespace

running_redis::running_redis(redis_setup setup) : setup_(std::move(setup)), port_(free_port())
{
    if (!setup_.cluster_dir.empty())
        do bus_port_ = free_port();
        while (bus_port_ == port_);
    start();
}

running_redis::~running_redis() = default;

void running_redis::start()
{
    std::vector<std::string> argv{"redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel", "notice"};
    auto port = std::to_string(port_);
    if (setup_.tls_dir.empty()) {
        argv.insert(argv.end(), {"--port", port});
    } else {
        const auto& d = setup_.tls_dir;
        argv.insert(argv.end(), {"--port", "0", "--tls-port", port, "--tls-cert-file", d + "/server.pem", "--tls-key-file",
                                 d + "/server.key", "--tls-ca-cert-file", d + "/ca.pem", "--tls-auth-clients",
                                 setup_.client_certs ? "yes" : "no"});
        if (!setup_.cluster_dir.empty()) argv.insert(argv.end(), {"--tls-cluster", "yes"});
    }
    if (!setup_.cluster_dir.empty())
        argv.insert(argv.end(), {"--cluster-enabled", "yes", "--cluster-config-file", "nodes-" + port + ".conf", "--dir",
                                 setup_.cluster_dir, "--cluster-node-timeout", "2000", "--cluster-port", std::to_string(bus_port_)});
    argv.insert(argv.end(), setup_.extra_args.begin(), setup_.extra_args.end());
    proc_ = std::make_unique<child_process>(argv, "Ready to accept connections");
}

void running_redis::pause()
{
    ::kill(proc_->pid(), SIGSTOP);
}

void running_redis::resume()
{
    ::kill(proc_->pid(), SIGCONT);
}

void running_redis::stop()
{
    proc_.reset();
}

std::string running_redis::cli(const std::string& args) const
{
    std::string tls;
    if (!setup_.tls_dir.empty()) {
        const auto& d = setup_.tls_dir;
        tls = "--tls --cacert " + d + "/ca.pem " + (setup_.client_certs ? "--cert " + d + "/server.pem --key " + d + "/server.key " : "");
    }
    std::string cmd = "redis-cli " + tls + "-p " + std::to_string(port_) + " " + args + " 2>&1";
    return output_of(cmd);
}

running_sentinel::running_sentinel(const std::string& name, std::uint16_t master_port, const std::string& master_password,
                                   const std::string& password, const std::string& tls_dir)
    : port_(free_port()), password_(password), tls_dir_(tls_dir)
{
    const auto conf = dir_.path() + "/sentinel.conf"; // the sentinel rewrites it as it learns
    std::ofstream out(conf);
    if (tls_dir.empty())
        out << "port " << port_ << "\n";
    else
        out << "port 0\ntls-port " << port_ << "\ntls-cert-file " << tls_dir << "/server.pem\ntls-key-file " << tls_dir
            << "/server.key\ntls-ca-cert-file " << tls_dir << "/ca.pem\ntls-auth-clients no\ntls-replication yes\n";
    out << "bind 127.0.0.1\ndir " << dir_.path() << "\n"
        << "sentinel monitor " << name << " 127.0.0.1 " << master_port << " 1\n"
        << "sentinel down-after-milliseconds " << name << " 1000\n"
        << "sentinel failover-timeout " << name << " 5000\n";
    if (!master_password.empty()) out << "sentinel auth-pass " << name << " " << master_password << "\n";
    if (!password.empty()) out << "requirepass " << password << "\n";
    out.close();
    proc_ = std::make_unique<child_process>(std::vector<std::string>{"redis-server", conf, "--sentinel"}, "+monitor master");
}

running_sentinel::~running_sentinel() = default;

std::string running_sentinel::cli(const std::string& args) const
{
    std::string auth = password_.empty() ? "" : "-a " + password_ + " --no-auth-warning ";
    std::string tls = tls_dir_.empty() ? "" : "--tls --cacert " + tls_dir_ + "/ca.pem ";
    std::string cmd = "redis-cli " + tls + "-p " + std::to_string(port_) + " " + auth + args + " 2>&1";
    return output_of(cmd);
}

temp_dir::temp_dir()
{
    char tmpl[] = "/tmp/dify-gw-test-XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
}

temp_dir::~temp_dir()
{
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
}

void write_test_pki(const std::string& dir)
{
    const auto& p = pki();
    for (auto [name, pem] : {std::pair{"ca.pem", &p.ca_cert_pem}, {"server.pem", &p.server_cert_pem}, {"server.key", &p.server_key_pem}}) {
        std::ofstream out(dir + "/" + name, std::ios::binary);
        out << *pem;
        if (!out) throw std::runtime_error(std::string("cannot write ") + name);
    }
}

} // namespace gw::test
