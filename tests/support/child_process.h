// A child process (posix_spawn) whose stdout the test reads, and kills with SIGKILL. Shared by the crash
// and torture tests.
#ifndef IDEM_TESTS_SUPPORT_CHILD_PROCESS_H_
#define IDEM_TESTS_SUPPORT_CHILD_PROCESS_H_

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/select.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"

extern char** environ;

namespace idem::testing {

// A child process whose stdout is read line by line.
class Child {
 public:
  explicit Child(const std::vector<std::string>& args) {
    int fds[2];
    if (pipe(fds) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    fd_ = fds[0];
  }
  ~Child() {
    if (pid_ > 0) Kill();
    if (fd_ >= 0) close(fd_);
  }

  bool running() const { return pid_ > 0; }

  // Reads whatever is available within `timeout`; returns false at end of stream.
  bool ReadFor(absl::Duration timeout) {
    fd_set set;
    FD_ZERO(&set);
    FD_SET(fd_, &set);
    timeval tv{static_cast<time_t>(absl::ToInt64Seconds(timeout)),
               static_cast<suseconds_t>(absl::ToInt64Microseconds(timeout) % 1000000)};
    if (select(fd_ + 1, &set, nullptr, nullptr, &tv) <= 0) return true;
    char buf[65536];
    const ssize_t n = read(fd_, buf, sizeof buf);
    if (n <= 0) return false;
    output_.append(buf, static_cast<size_t>(n));
    return true;
  }

  // Reads until the output contains `marker` or `timeout` passes; false if the output ended first (the
  // child exited).
  bool ReadUntilOutput(const std::string& marker, absl::Duration timeout) {
    const absl::Time give_up = absl::Now() + timeout;
    while (output_.find(marker) == std::string::npos && absl::Now() < give_up) {
      if (!ReadFor(absl::Milliseconds(10))) return false;
    }
    return true;
  }

  // Reads until `deadline` (the child runs on meanwhile); false if the output ended first.
  bool ReadUntil(absl::Time deadline) {
    while (absl::Now() < deadline) {
      if (!ReadFor(absl::Milliseconds(2))) return false;
    }
    return true;
  }

  // Waits for the child to exit by itself (after its output ended), and reaps it.
  int Wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

  // SIGKILL, reap, and read what the child wrote before dying.
  int Kill() {
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    while (ReadFor(absl::Milliseconds(1))) {
    }
    return status;
  }

  const std::string& output() const { return output_; }

  pid_t pid() const { return pid_; }
  void Signal(int sig) const {
    if (pid_ > 0) kill(pid_, sig);
  }
  // Whether the child is stopped (by SIGSTOP, its own or another's).
  bool Stopped() const {
    if (pid_ <= 0) return false;
    int status = 0;
    return waitpid(pid_, &status, WUNTRACED | WNOHANG) == pid_ && WIFSTOPPED(status);
  }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
  std::string output_;
};

}  // namespace idem::testing

#endif  // IDEM_TESTS_SUPPORT_CHILD_PROCESS_H_
