// kite::cpu: CPUID read against the kernel's own account of the CPU (/proc/cpuinfo, where the
// OS has one), the vendor -> tuning table, and the tuning override tests and benchmarks use.
#include <fstream>
#include <string>

#include "kite/core/cpu.hpp"
#include "kite_test.hpp"

namespace {
// The first value of `key` in /proc/cpuinfo ("" when there is no such file or key).
std::string cpuinfo_field(const std::string& key) {
    std::ifstream f("/proc/cpuinfo");
    std::string line;
    while (std::getline(f, line)) {
        const auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::string k = line.substr(0, colon);
        while (!k.empty() && (k.back() == ' ' || k.back() == '\t')) k.pop_back();
        if (k == key) return colon + 2 <= line.size() ? line.substr(colon + 2) : std::string();
    }
    return {};
}
}  // namespace

TEST_CASE("kite::cpu::host agrees with /proc/cpuinfo", "[core][cpu]") {
    const kite::cpu::info& h = kite::cpu::host();
    CHECK(&h == &kite::cpu::host());  // read once, cached
    const std::string vendor = cpuinfo_field("vendor_id");
    if (vendor.empty()) {  // not an x86 Linux host: CPUID is not read there
        CHECK(h.vendor == kite::cpu::vendor::unknown);
        CHECK(kite::cpu::host_tuning() == kite::cpu::tuning::intel);
        return;
    }
    INFO("vendor_id " << vendor << ", host " << kite::cpu::describe());
    if (vendor == "GenuineIntel") CHECK(h.vendor == kite::cpu::vendor::intel);
    else if (vendor == "AuthenticAMD") CHECK(h.vendor == kite::cpu::vendor::amd);
    else CHECK(h.vendor == kite::cpu::vendor::unknown);
    CHECK(std::to_string(h.family) == cpuinfo_field("cpu family"));
    CHECK(std::to_string(h.model) == cpuinfo_field("model"));
    CHECK(std::to_string(h.stepping) == cpuinfo_field("stepping"));
    CHECK(std::string(h.brand) == cpuinfo_field("model name"));
    CHECK(kite::cpu::host_tuning() == kite::cpu::tuning_for(h));
}

TEST_CASE("kite::cpu::tuning_for: Zen for AMD family 0x17 and later, Intel's defaults otherwise", "[core][cpu]") {
    using kite::cpu::tuning;
    using kite::cpu::vendor;
    const auto of = [](vendor v, int family) {
        kite::cpu::info i;
        i.vendor = v;
        i.family = family;
        return kite::cpu::tuning_for(i);
    };
    CHECK(of(vendor::amd, 0x19) == tuning::zen);   // Zen 3 / Zen 4 (Genoa: family 25 model 17)
    CHECK(of(vendor::amd, 0x1a) == tuning::zen);   // Zen 5
    CHECK(of(vendor::amd, 0x17) == tuning::zen);   // Zen / Zen 2
    CHECK(of(vendor::amd, 0x15) == tuning::intel);  // Bulldozer: no AVX-512 kernels differ
    CHECK(of(vendor::intel, 6) == tuning::intel);
    CHECK(of(vendor::unknown, 0x19) == tuning::intel);
}

TEST_CASE("kite::cpu::scoped_tuning forces a tuning and restores the previous one, nested", "[core][cpu]") {
    using kite::cpu::tuning;
    const tuning host = kite::cpu::host_tuning();
    CHECK(kite::cpu::active_tuning() == host);
    {
        const kite::cpu::scoped_tuning a(tuning::zen);
        CHECK(kite::cpu::active_tuning() == tuning::zen);
        {
            const kite::cpu::scoped_tuning b(tuning::intel);
            CHECK(kite::cpu::active_tuning() == tuning::intel);
        }
        CHECK(kite::cpu::active_tuning() == tuning::zen);
    }
    CHECK(kite::cpu::active_tuning() == host);
    CHECK(kite::cpu::describe().find("family " + std::to_string(kite::cpu::host().family)) != std::string::npos);
}
