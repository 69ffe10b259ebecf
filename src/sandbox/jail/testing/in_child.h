// Runs a check in a forked child, so a sandbox (which can never be left)
// confines only the child: the check returns "" or what went wrong.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <functional>
#include <string>

namespace hostvisor::testing {

inline std::string in_child(const std::function<std::string()>& check) {
  int fds[2];
  if (::pipe(fds) != 0) return "pipe failed";
  const pid_t pid = ::fork();
  if (pid < 0) return "fork failed";
  if (pid == 0) {
    ::close(fds[0]);
    const std::string problem = check();
    (void)!::write(fds[1], problem.data(), problem.size());
    ::_exit(problem.empty() ? 0 : 1);
  }
  ::close(fds[1]);
  std::string problem;
  char buffer[512];
  for (ssize_t n; (n = ::read(fds[0], buffer, sizeof buffer)) > 0;) problem.append(buffer, static_cast<size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status)) return "the child died: " + std::to_string(WTERMSIG(status)) + " " + problem;
  if (WEXITSTATUS(status) != 0 && problem.empty()) return "the child failed without saying why";
  return problem;
}

}  // namespace hostvisor::testing
