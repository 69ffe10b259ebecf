"""The default guest's serial console, driven through a hostvisor or QEMU
child's stdin and stdout: the benchmarks' shared way to type commands into a
guest and wait for their output."""
import os
import select
import subprocess
import tempfile
import time


class Console:
    """The guest's serial console on the child's stdin and stdout."""

    def __init__(self, name, argv):
        self.name, self.out, self.marks = name, b"", 0
        self.log = tempfile.TemporaryFile()
        self.child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)

    def wait_for(self, text, timeout):
        deadline = time.monotonic() + timeout
        while text not in self.out:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{self.name}: no {text!r} within {timeout} s; last output:\n"
                                   + self.out[-1500:].decode(errors="replace"))
            ready, _, _ = select.select([self.child.stdout], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(self.child.stdout.fileno(), 65536)
                if not chunk:
                    self.log.seek(0)
                    raise RuntimeError(f"{self.name} exited (status {self.child.wait()}); stderr:\n"
                                       + self.log.read()[-1500:].decode(errors="replace"))
                self.out += chunk
        at = self.out.index(text)
        before, self.out = self.out[:at], self.out[at + len(text):]
        return before

    def start(self, command):
        """Types `command` followed by an end mark the typed line cannot show;
        returns the mark to wait for."""
        self.marks += 1
        self.child.stdin.write(f'{command}; echo "@@END""{self.marks}@@"\r'.encode())
        self.child.stdin.flush()
        return f"@@END{self.marks}@@".encode()

    def run(self, command, timeout=60):
        """Runs `command`; returns what the console showed up to its end mark."""
        return self.wait_for(self.start(command), timeout)

    def close(self):
        if self.child.poll() is None:
            try:
                self.child.stdin.write(b"poweroff\r")
                self.child.stdin.flush()
                end = time.monotonic() + 60
                while self.child.poll() is None and time.monotonic() < end:
                    ready, _, _ = select.select([self.child.stdout], [], [], 0.2)
                    if ready and not os.read(self.child.stdout.fileno(), 65536):
                        break
            except OSError:
                pass
        if self.child.poll() is None:
            self.child.kill()
        self.child.wait()
        self.log.close()

