#pragma once
// Fault injection for the crash-safety tests: a writer runs in a forked child process and is
// killed with SIGKILL at a chosen moment.
//
//   const int acked = kite::test::run_and_kill([&](auto ack) {
//       for (int i = 0;; ++i) { store(i); ack(i); }           // ack: "i is durable"
//   }, /*until=*/40, std::chrono::microseconds(500));
//   // every i <= acked must be there; the write in flight may be lost
//
// POSIX only (fork, pipe, kill), as are the tests that use it.

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "kite_test.hpp"

namespace kite::test {

/// Runs work(ack) in a child process; ack(int i) tells the parent that step i is done. The parent
/// reads acknowledgements until one >= `until` arrives (none awaited when until < 0), waits
/// `delay`, kills the child with SIGKILL and returns the last acknowledged step (-1: none). The
/// child must not finish on its own: an exception in it exits with status 3 and fails the test.
template <class Work>
int run_and_kill(Work&& work, int until, std::chrono::microseconds delay) {
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        try {
            work([fd = fds[1]](int i) {
                if (write(fd, &i, sizeof i) != sizeof i) _exit(4);
            });
        } catch (...) {
            _exit(3);
        }
        _exit(5);
    }
    close(fds[1]);
    int last = -1, x = 0;
    while (last < until && read(fds[0], &x, sizeof x) == sizeof x) last = x;
    std::this_thread::sleep_for(delay);
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    INFO("the writer exited with status " << (WIFEXITED(status) ? WEXITSTATUS(status) : -1)
                                          << " before it was killed (3: an exception)");
    REQUIRE(WIFSIGNALED(status));
    while (read(fds[0], &x, sizeof x) == sizeof x) last = x;  // acknowledgements still in the pipe
    close(fds[0]);
    return last;
}

}  // namespace kite::test
