// Uses kite as a user would, through the umbrella header.
#include <kite/kite.hpp>

#include <cstdio>
#ifdef CONSUMER_HAS_APP
#include <kite/app.hpp>
#endif

int main() {
    kite::matrix<float> m(2, 3, 1.0f);
    const float d = kite::simd::dot(m.row(0), m.row(1));
    const float h = kite::bf16(d).to_float();
    std::printf("kite %s: dot = %g, bf16 = %g\n", KITE_VERSION_STRING, d, h);
#ifdef CONSUMER_HAS_APP
    // kite::app links SQLite and RE2: an in-memory cache and a PII mask.
    kite::app::exact_cache cache(":memory:");
    cache.store("q", "scope", "a");
    const auto masked = kite::app::validator<kite::app::pii_mask>(kite::app::pii_mask{}).check(
        kite::app::stage::output, "mail me at a@b.io");
    if (!cache.lookup("q", "scope") || masked.text != "mail me at [EMAIL]") return 1;
#endif
    return (d == 3.0f && h == 3.0f) ? 0 : 1;
}
