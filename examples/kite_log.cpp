// kite-log: what an LLM application's exchange log (kite/app/exchange_log.hpp) says — how many
// questions, how many failed, how often the cache answered, how long each stage took, which
// validation rules fired — or the exchanges themselves as JSON Lines.
//
//   kite-log --db app.sqlite                                   # the summary table
//   kite-log --db app.sqlite --since 1714521600 --tail 5       # a window, and its last 5 exchanges
//   kite-log --db app.sqlite --jsonl - | jq .answer            # JSON Lines on stdout instead
//   kite-log --db app.sqlite --jsonl day.jsonl                 # JSON Lines to a file, and the summary
//
// Times are Unix seconds; a window is since <= time < until. Latency percentiles are nearest
// rank (the p-th percentile of N values is the ceil(p N / 100)-th smallest). The file is opened
// read-only, so this is safe while an application is writing to it.
#include <kite/app/exchange_log.hpp>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

#include "cli.hpp"

namespace fs = std::filesystem;
namespace ka = kite::app;

namespace {

/// "2024-05-01 10:00:00Z" (UTC).
std::string utc(double unix_seconds) {
    const auto t = static_cast<std::time_t>(unix_seconds);
    std::tm tm{};
    if (!gmtime_r(&t, &tm)) return std::to_string(unix_seconds);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%SZ", &tm);
    return buf;
}

std::string span(double seconds) {
    char buf[32];
    if (seconds < 120) std::snprintf(buf, sizeof buf, "%.0f s", seconds);
    else if (seconds < 7200) std::snprintf(buf, sizeof buf, "%.1f min", seconds / 60);
    else if (seconds < 172800) std::snprintf(buf, sizeof buf, "%.1f h", seconds / 3600);
    else std::snprintf(buf, sizeof buf, "%.1f days", seconds / 86400);
    return buf;
}

/// `s` on one line, cut to at most `max` bytes on a UTF-8 character boundary.
std::string brief(std::string s, std::size_t max) {
    for (auto& c : s)
        if (c == '\n' || c == '\r' || c == '\t') c = ' ';
    if (s.size() <= max) return s;
    std::size_t cut = max;
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
    return s.substr(0, cut) + "...";
}

std::string percent(std::uint64_t part, std::uint64_t whole) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f%%", whole ? 100.0 * static_cast<double>(part) / static_cast<double>(whole) : 0.0);
    return buf;
}

void print_summary(const std::string& db, const ka::log_summary& s) {
    std::printf("exchange log %s\n\n", db.c_str());
    std::printf("  %-22s %10llu\n", "exchanges", static_cast<unsigned long long>(s.count));
    if (s.count)
        std::printf("  %-22s %s .. %s (%s)\n", "time span", utc(s.first_time).c_str(), utc(s.last_time).c_str(),
                    span(s.last_time - s.first_time).c_str());
    std::printf("  %-22s %10llu  (%s)\n", "errors", static_cast<unsigned long long>(s.errors),
                percent(s.errors, s.count).c_str());
    std::printf("  %-22s %9.1f%%\n", "cache hit rate", 100.0 * s.cache_hit_rate);
    for (const auto& [outcome, n] : s.cache_outcomes)
        std::printf("    %-20s %10llu  (%s)\n", outcome.c_str(), static_cast<unsigned long long>(n),
                    percent(n, s.count).c_str());

    std::printf("\n  %-22s %8s %10s %10s %10s\n", "latency (ms)", "n", "p50", "p95", "p99");
    std::vector<std::string> order = {"retrieval", "prompt", "ttft", "generation", "total"};
    for (const auto& [key, p] : s.latency_ms)
        if (std::find(order.begin(), order.end(), key) == order.end()) order.insert(order.end() - 1, key);
    bool any = false;
    for (const auto& key : order) {
        const auto it = s.latency_ms.find(key);
        if (it == s.latency_ms.end()) continue;
        any = true;
        const auto& [p50, p95, p99] = it->second;
        std::printf("    %-20s %8llu %10.2f %10.2f %10.2f\n", key.c_str(),
                    static_cast<unsigned long long>(s.latency_samples.at(key)), p50, p95, p99);
    }
    if (!any) std::printf("    (no timings)\n");
    std::printf("    percentiles: nearest rank\n");

    std::printf("\n  %-22s %10llu  (in %llu exchanges)\n", "validation failures",
                static_cast<unsigned long long>(s.validation_failures),
                static_cast<unsigned long long>(s.failed_exchanges));
    for (const auto& [rule, n] : s.failures_by_rule)
        std::printf("    %-20s %10llu\n", rule.c_str(), static_cast<unsigned long long>(n));
}

void print_tail(const std::vector<ka::exchange>& xs) {
    std::printf("\nlast %zu exchanges\n", xs.size());
    for (const auto& e : xs) {
        std::string total = "-";
        if (const auto t = e.timings_ms.find("total"); t != e.timings_ms.end() && t->is_number()) {
            char buf[32];
            std::snprintf(buf, sizeof buf, "%.1f ms", t->get<double>());
            total = buf;
        }
        std::printf("  %s  %-8.8s  %-8s %10s  Q: %s\n", utc(e.time).c_str(), e.request_id.c_str(), e.cache.c_str(),
                    total.c_str(), brief(e.question, 60).c_str());
        if (!e.error.empty()) std::printf("  %46s ERROR: %s\n", "", brief(e.error, 60).c_str());
        else std::printf("  %46s A: %s\n", "", brief(e.answer, 60).c_str());
    }
}

}  // namespace

int main(int argc, char** argv) {
    kite::cli::parser cli("kite-log", "Summarize an LLM application's exchange log (kite/app/exchange_log.hpp), or export it as JSON Lines.");
    auto& db = cli.option<fs::path>("--db", "FILE", "the SQLite file the application logs to").required();
    auto& since = cli.option<double>("--since", "UNIX_SECONDS", "only exchanges at or after this time", 0.0);
    auto& until = cli.option<double>("--until", "UNIX_SECONDS", "only exchanges before this time (default: no limit)");
    auto& jsonl = cli.option<std::string>("--jsonl", "OUT|-", "write the exchanges as JSON Lines to OUT ('-': stdout, instead of the summary)");
    auto& tail = cli.option<std::size_t>("--tail", "N", "also print the last N exchanges briefly", 0).range(0, 1000000);
    cli.epilog("Latency percentiles are nearest rank. Exit status: 0 done, 1 the file cannot be read, 2 usage.");
    return kite::cli::run(cli, argc, argv, [&] {
        const double lo = *since;
        const double hi = until.given() ? *until : std::numeric_limits<double>::infinity();
        if (!(lo < hi))
            throw kite::cli::usage_error("--until: expected a time after --since (" + std::to_string(lo) + "), got '" +
                                         std::to_string(*until) + "'");
        if (jsonl.given() && jsonl->empty()) throw kite::cli::usage_error("--jsonl: expected a file name or '-', got ''");
        if (*jsonl == "-" && tail.given())
            throw kite::cli::usage_error("--tail prints a table; it cannot share stdout with --jsonl -");
        if (!fs::exists(*db)) throw kite::io_error(db->string() + " does not exist");

        ka::log_reader reader(*db);
        if (*jsonl == "-") {
            reader.export_jsonl(std::cout, lo, hi);
            return 0;
        }
        if (jsonl.given()) {
            std::ofstream out(*jsonl, std::ios::binary);
            if (!out) throw kite::io_error("--jsonl: cannot write " + *jsonl);
            const std::size_t n = reader.export_jsonl(out, lo, hi);
            std::fprintf(stderr, "kite-log: wrote %zu exchanges to %s\n", n, jsonl->c_str());
        }
        print_summary(db->string(), reader.summary(lo, hi));
        if (*tail > 0) print_tail(reader.recent(*tail, lo, hi));
        return 0;
    });
}
