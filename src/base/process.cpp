#include "base/process.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/fd.h"

extern char** environ;

namespace hostvisor {

Result<ProcessResult> run_process(const std::vector<std::string>& argv, const std::string& cwd) {
  if (argv.empty()) return Error(ErrorCode::kInvalidArgument, "run_process: empty command");
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) < 0) return Error::from_errno("pipe");
  UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), 2);
  if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str());

  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  int rc = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return Error(ErrorCode::kNotFound, "cannot run " + argv[0] + ": " + std::strerror(rc));
  write_end.reset();

  ProcessResult result;
  char buffer[8192];
  for (;;) {
    ssize_t n = ::read(read_end.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    result.output.append(buffer, static_cast<size_t>(n));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

Result<std::string> run_process_checked(const std::vector<std::string>& argv, const std::string& cwd) {
  ProcessResult r = HV_TRY(run_process(argv, cwd));
  if (r.exit_status != 0) {
    std::string command;
    for (const auto& a : argv) command += (command.empty() ? "" : " ") + a;
    std::string tail = r.output.size() > 600 ? r.output.substr(r.output.size() - 600) : r.output;
    while (!tail.empty() && (tail.back() == '\n' || tail.back() == ' ')) tail.pop_back();
    return Error(ErrorCode::kIo, "'" + command + "' failed (status " + std::to_string(r.exit_status) + "): " + tail);
  }
  return std::move(r.output);
}

}  // namespace hostvisor
