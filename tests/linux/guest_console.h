// Drives a running `hostvisor run` through its serial console the way a
// person at a terminal would: send a line, wait for text to appear. The
// child's stdin and stdout are pipes; stderr is captured separately.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <regex>
#include <string>
#include <vector>

namespace hostvisor::testing {

class GuestConsole {
 public:
  GuestConsole() = default;
  GuestConsole(const GuestConsole&) = delete;
  GuestConsole& operator=(const GuestConsole&) = delete;
  ~GuestConsole();  // kills a child that is still running

  // Starts argv[0] (a path) with argv; false and failure() on failure.
  bool start(const std::vector<std::string>& argv);

  // Waits until stdout, from the read cursor on, contains `text` (or a match
  // of `pattern`); the cursor then moves past it. On timeout or when the
  // child exits first, returns nullopt and failure() says why, with the
  // last 2 KiB of output.
  std::optional<std::string> wait_for_text(const std::string& text, std::chrono::milliseconds timeout);
  std::optional<std::smatch> wait_for_regex(const std::regex& pattern, std::chrono::milliseconds timeout);

  // Runs a shell command in the guest and returns what it printed (with
  // "\r" removed) and its exit status, using markers the echo of the typed
  // line cannot produce.
  struct CommandResult {
    std::string output;
    int status = -1;
  };
  std::optional<CommandResult> run(const std::string& command, std::chrono::milliseconds timeout);

  // Types a line as a terminal does: the text followed by "\r".
  bool send_line(const std::string& line);
  // Types `keys` as they are (console escapes such as Ctrl-A p).
  bool send_keys(const std::string& keys);
  // Reads the child's output for `duration`, whatever comes.
  void read_for(std::chrono::milliseconds duration);
  // Sends `signal` to the child (false if it is gone).
  bool send_signal(int signal);

  // Waits for the child to exit; kills it (SIGKILL) at the deadline. Returns
  // its exit status, or nullopt if it was killed or ended by a signal.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);

  // The child's process id while it runs (-1 before start()), for tests
  // that look at it in /proc.
  pid_t pid() const { return pid_; }
  const std::string& out() const { return out_; }
  const std::string& err() const { return err_; }
  const std::string& failure() const { return failure_; }

 private:
  // Reads whatever is available within `budget`; false once both pipes are
  // closed (the child is gone).
  bool pump(std::chrono::milliseconds budget);
  void fail(const std::string& why);
  void kill_child();

  pid_t pid_ = -1;
  int in_fd_ = -1, out_fd_ = -1, err_fd_ = -1;
  std::string out_, err_;
  size_t cursor_ = 0;
  int marker_ = 0;
  std::string failure_;
  std::optional<int> wait_status_;
};

// Runs `command` in the guest and expects it to succeed: a gtest failure
// names the command when it exits non-zero, times out or the guest is gone.
// Returns what it printed (empty when it never finished).
std::string guest_ok(GuestConsole& console, const std::string& command,
                     std::chrono::milliseconds timeout = std::chrono::seconds(60));

}  // namespace hostvisor::testing
