// Peak extra memory of prefill attention, measured: each (kernel, sequence length) runs in a
// fresh child process that allocates and touches q, k, v, o, records its peak resident set
// (VmHWM), runs the kernel once and records VmHWM again; the difference is the memory the
// kernel itself touched beyond its inputs and output. flash's is a fixed per-thread workspace;
// reference materializes a [s][s] score matrix per thread, so it grows quadratically.
//
//   bench_attn_memory [heads=2] [head_dim=64] [lengths=1024,4096,16384]
//
// Linux only (fork, /proc/self/status). Prints a Markdown table.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "kite/attn.hpp"
#include "kite/core/buffer.hpp"

namespace {

using namespace kite;

long peak_rss_kb() {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("VmHWM:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
    return -1;
}

aligned_buffer<float> touched(index_t n, float base) {
    aligned_buffer<float> b(n, uninitialized);
    for (index_t i = 0; i < n; ++i) b[i] = base + static_cast<float>(i % 97) * 0.01f;
    return b;
}

struct result {
    long extra_kb;
    double seconds;
};

template <class Kernel>
result measure(index_t s, index_t h, index_t d) {
    const auto q = touched(s * h * d, 0.1f), k = touched(s * h * d, 0.2f), v = touched(s * h * d, 0.3f);
    auto o = touched(s * h * d, 0.0f);
    // Start the thread pool first so its stacks are part of the baseline.
    std::vector<float> warm(1024, 1.0f);
    parallel_for(0, warm.size(), [&](std::size_t i) { warm[i] *= 2.0f; });
    const long before = peak_rss_kb();
    const auto t0 = std::chrono::steady_clock::now();
    attn::prefill<attn::mha, Kernel>(tensor_view<const float, 4>(q.data(), {1, s, h, d}),
                                     tensor_view<const float, 4>(k.data(), {1, s, h, d}),
                                     tensor_view<const float, 4>(v.data(), {1, s, h, d}),
                                     tensor_view<float, 4>(o.data(), {1, s, h, d}), {});
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return {peak_rss_kb() - before, secs};
}

template <class Kernel>
result in_child(index_t s, index_t h, index_t d) {
    int fds[2];
    if (pipe(fds) != 0) return {-1, 0};
    const pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        const result r = measure<Kernel>(s, h, d);
        if (write(fds[1], &r, sizeof r) != static_cast<ssize_t>(sizeof r)) _exit(2);
        _exit(0);
    }
    close(fds[1]);
    result r{-1, 0};
    if (read(fds[0], &r, sizeof r) != static_cast<ssize_t>(sizeof r)) r = {-1, 0};
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return r;
}

}  // namespace

int main(int argc, char** argv) {
    kite::bench::host_setup(argc, argv);  // --tuning=intel|zen; names the host
    const index_t h = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 2;
    const index_t d = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 64;
    std::vector<index_t> lengths{1024, 4096, 16384};
    if (argc > 3) {
        lengths.clear();
        std::stringstream ss(argv[3]);
        for (std::string x; std::getline(ss, x, ',');) lengths.push_back(std::strtoul(x.c_str(), nullptr, 10));
    }
    const int threads = kite::max_threads();
    std::printf("host: %s\n", kite::cpu::describe().c_str());
    std::printf("prefill peak extra memory (VmHWM delta), batch 1, %zu heads, head_dim %zu, causal, %d threads\n\n",
                h, d, threads);
    std::printf("| seq | q+k+v+o (MiB) | flash extra (KiB) | flash workspace formula (KiB) | reference extra (MiB) | "
                "reference s*s*8*threads (MiB) | flash s | reference s |\n|---|---|---|---|---|---|---|---|\n");
    for (const index_t s : lengths) {
        const result f = in_child<attn::flash<64, 64>>(s, h, d);
        const result r = in_child<attn::reference>(s, h, d);
        std::printf("| %zu | %.1f | %ld | %.1f | %.1f | %.1f | %.3f | %.2f |\n", s, 4.0 * s * h * d * 4 / 1048576.0,
                    f.extra_kb, attn::flash<64, 64>::prefill_workspace_bytes(d, threads) / 1024.0,
                    r.extra_kb / 1024.0, attn::reference::workspace_bytes(s, s, std::min<int>(threads, int(h))) / 1048576.0,
                    f.seconds, r.seconds);
        std::fflush(stdout);
    }
    return 0;
}
