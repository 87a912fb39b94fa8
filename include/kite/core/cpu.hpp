#pragma once
/// @file kite/core/cpu.hpp
/// The host CPU as CPUID reports it (vendor, family, model, brand), read once and cached, and
/// the *tuning* kite's kernels follow: where the fastest code for the same instruction set
/// differs between vendors (AMD Zen executes each 512-bit operation as two 256-bit halves and
/// its prefetchers follow one sequential stream far better than many interleaved ones), a
/// kernel asks kite::cpu::active_tuning() once per call and runs the variant for that family.
/// No rebuild is needed to move a binary between Intel and AMD hosts.
///
///   const kite::cpu::info& h = kite::cpu::host();   // h.vendor, h.family, h.model, h.brand
///   kite::cpu::scoped_tuning force(kite::cpu::tuning::zen);   // tests and benchmarks only
///
/// The override is process-wide (an atomic), meant for tests that run every variant on any
/// host and for benchmarks that compare them; set it before, not during, concurrent searches.
///
/// AMX (Intel's tile matrix unit, Sapphire Rapids and later) is a feature kernels use when it is
/// there: amx_bf16_available() says whether the CPU has AMX-TILE and AMX-BF16 *and* the kernel
/// grants this process the tile state (Linux 5.16+: arch_prctl ARCH_REQ_XCOMP_PERM; some VMs
/// list AMX but do not grant it, and a tile instruction then faults). amx_active() adds the
/// switches: the Intel tuning, and no scoped_amx(false) in force. amx_int8_available() /
/// amx_int8_active() say the same of AMX-INT8 (the int8 tile dot products of
/// kite/quant/ggml_a8.hpp's batched kernel).
///
///   kite::cpu::scoped_amx off(false);   // tests and benchmarks: the AVX-512 kernels instead

#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define KITE_CPU_HAS_CPUID 1
#else
#define KITE_CPU_HAS_CPUID 0
#endif
#if KITE_CPU_HAS_CPUID && defined(__x86_64__) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace kite::cpu {

/// CPU vendors kite tells apart.
enum class vendor { unknown, intel, amd };

/// What CPUID says about the host.
struct info {
    kite::cpu::vendor vendor = vendor::unknown;
    int family = 0;    ///< display family (base + extended), e.g. 6 for Intel Core/Xeon, 25 for AMD Zen 3/4
    int model = 0;     ///< display model (base + extended << 4)
    int stepping = 0;
    char brand[49] = {};  ///< the processor brand string ("" where CPUID has none)
};

/// Families of kernel variants. Each kernel documents what it does differently per tuning.
enum class tuning {
    intel,  ///< the defaults, tuned on Intel Xeon (also used for unknown CPUs)
    zen,    ///< AMD Zen (family 0x17 and later): sequential row streams, fewer wide shuffles
};

namespace detail {

inline info read_host() noexcept {
    info h;
#if KITE_CPU_HAS_CPUID
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (__get_cpuid(0, &a, &b, &c, &d) == 0) return h;
    char id[13] = {};
    std::memcpy(id, &b, 4);
    std::memcpy(id + 4, &d, 4);
    std::memcpy(id + 8, &c, 4);
    if (std::strcmp(id, "GenuineIntel") == 0) h.vendor = vendor::intel;
    else if (std::strcmp(id, "AuthenticAMD") == 0) h.vendor = vendor::amd;
    if (__get_cpuid(1, &a, &b, &c, &d) != 0) {
        const int base_family = static_cast<int>((a >> 8) & 0xf);
        const int base_model = static_cast<int>((a >> 4) & 0xf);
        h.stepping = static_cast<int>(a & 0xf);
        h.family = base_family == 0xf ? base_family + static_cast<int>((a >> 20) & 0xff) : base_family;
        h.model = (base_family == 0x6 || base_family == 0xf) ? base_model + (static_cast<int>((a >> 16) & 0xf) << 4)
                                                               : base_model;
    }
    if (__get_cpuid(0x80000000u, &a, &b, &c, &d) != 0 && a >= 0x80000004u) {
        unsigned regs[12];
        for (unsigned i = 0; i < 3; ++i)
            __get_cpuid(0x80000002u + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2], &regs[4 * i + 3]);
        std::memcpy(h.brand, regs, 48);
        h.brand[48] = '\0';
        // Trim the padding some CPUs put around the string.
        std::size_t n = std::strlen(h.brand);
        while (n > 0 && h.brand[n - 1] == ' ') h.brand[--n] = '\0';
        std::size_t lead = 0;
        while (h.brand[lead] == ' ') ++lead;
        if (lead > 0) std::memmove(h.brand, h.brand + lead, n - lead + 1);
    }
#endif
    return h;
}

/// -1: no override; otherwise the forced tuning's value.
inline std::atomic<int> tuning_override{-1};

}  // namespace detail

/// The host CPU (CPUID read on first use, then cached).
inline const info& host() noexcept {
    static const info h = detail::read_host();
    return h;
}

/// The tuning a CPU should get: zen for AMD family 0x17 (Zen, Zen 2) and later (Zen 3/4/5 are
/// 0x19 and 0x1a), intel otherwise.
constexpr tuning tuning_for(const info& h) noexcept {
    return h.vendor == vendor::amd && h.family >= 0x17 ? tuning::zen : tuning::intel;
}

/// The tuning of this host (cached).
inline tuning host_tuning() noexcept {
    static const tuning t = tuning_for(host());
    return t;
}

/// The tuning kernels follow now: the override when one is set, the host's otherwise.
inline tuning active_tuning() noexcept {
    const int o = detail::tuning_override.load(std::memory_order_relaxed);
    return o < 0 ? host_tuning() : static_cast<tuning>(o);
}

/// Forces a tuning for the lifetime of the object (tests and benchmarks), restoring the
/// previous state after.
class scoped_tuning {
public:
    explicit scoped_tuning(tuning t) noexcept
        : previous_(detail::tuning_override.exchange(static_cast<int>(t), std::memory_order_relaxed)) {}
    ~scoped_tuning() { detail::tuning_override.store(previous_, std::memory_order_relaxed); }
    scoped_tuning(const scoped_tuning&) = delete;
    scoped_tuning& operator=(const scoped_tuning&) = delete;

private:
    int previous_;
};

/// Name of a tuning ("intel", "zen").
constexpr const char* name(tuning t) noexcept { return t == tuning::zen ? "zen" : "intel"; }
/// Name of a vendor ("Intel", "AMD", "unknown").
constexpr const char* name(vendor v) noexcept {
    return v == vendor::intel ? "Intel" : v == vendor::amd ? "AMD" : "unknown";
}

namespace detail {

/// CPUID leaf 7 (EDX bit 24 AMX-TILE, bit 22 AMX-BF16, bit 25 AMX-INT8), XCR0 bits 17 and 18
/// (the OS saves tile configuration and data) and, on Linux, the permission to use the tile
/// data, requested here (process-wide; granted once, never revoked). Bits of the result: 1 the
/// tile state is usable, 2 AMX-BF16, 4 AMX-INT8 (0 when the tiles are not usable).
inline unsigned read_amx() noexcept {
#if KITE_CPU_HAS_CPUID && defined(__x86_64__) && defined(__linux__)
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (__get_cpuid_max(0, nullptr) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    if (!((d >> 24) & 1u)) return 0;
    const unsigned kinds = (((d >> 22) & 1u) ? 2u : 0u) | (((d >> 25) & 1u) ? 4u : 0u);
    __cpuid(1, a, b, c, d);
    if (!((c >> 27) & 1u)) return 0;  // OSXSAVE: xgetbv is allowed
    std::uint32_t lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & (3u << 17)) != (3u << 17)) return 0;
    constexpr long arch_req_xcomp_perm = 0x1023, xfeature_xtiledata = 18;
    return syscall(SYS_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata) == 0 ? 1u | kinds : 0u;
#else
    return 0;
#endif
}

inline unsigned amx_bits() noexcept {
    static const unsigned bits = read_amx();
    return bits;
}

/// 1: AMX allowed (the default), 0: switched off by scoped_amx.
inline std::atomic<int> amx_allowed{1};

}  // namespace detail

/// Whether this process can run AMX-BF16 tile instructions (checked once, then cached).
inline bool amx_bf16_available() noexcept { return (detail::amx_bits() & 3u) == 3u; }
/// Whether this process can run AMX-INT8 tile instructions (checked once, then cached).
inline bool amx_int8_available() noexcept { return (detail::amx_bits() & 5u) == 5u; }

/// Whether kernels use AMX now: available, the Intel tuning active (a forced Zen tuning runs
/// Zen's kernels on any host), and not switched off by scoped_amx.
inline bool amx_active() noexcept {
    return detail::amx_allowed.load(std::memory_order_relaxed) != 0 && active_tuning() == tuning::intel &&
           amx_bf16_available();
}
/// The same for AMX-INT8: available, the Intel tuning active, not switched off by scoped_amx.
inline bool amx_int8_active() noexcept {
    return detail::amx_allowed.load(std::memory_order_relaxed) != 0 && active_tuning() == tuning::intel &&
           amx_int8_available();
}

/// Allows (true) or forbids (false) AMX kernels for the lifetime of the object (tests and
/// benchmarks), restoring the previous state after.
class scoped_amx {
public:
    explicit scoped_amx(bool allow) noexcept
        : previous_(detail::amx_allowed.exchange(allow ? 1 : 0, std::memory_order_relaxed)) {}
    ~scoped_amx() { detail::amx_allowed.store(previous_, std::memory_order_relaxed); }
    scoped_amx(const scoped_amx&) = delete;
    scoped_amx& operator=(const scoped_amx&) = delete;

private:
    int previous_;
};

/// One line naming the host for benchmark output, e.g.
/// "AMD EPYC (AMD, family 25 model 17 stepping 1), kernels tuned: zen".
inline std::string describe() {
    const info& h = host();
    std::string s = h.brand[0] ? std::string(h.brand) : std::string("unknown CPU");
    s += " (";
    s += name(h.vendor);
    s += ", family " + std::to_string(h.family) + " model " + std::to_string(h.model) + " stepping " +
         std::to_string(h.stepping) + "), kernels tuned: ";
    s += name(active_tuning());
    if (amx_bf16_available()) s += amx_active() ? ", AMX-BF16 in use" : ", AMX-BF16 (off)";
    if (amx_int8_available()) s += amx_int8_active() ? ", AMX-INT8 in use" : ", AMX-INT8 (off)";
    return s;
}

}  // namespace kite::cpu
