// kite::cuda's runtime layer on a device: device facts, device_buffer round trips and size
// checks, a clear cuda_error for an allocation the device cannot hold. Without a device every
// case reports itself skipped, and device_present() must say false without throwing.

#include <cstdint>
#include <numeric>
#include <vector>

#include "gpu_test.hpp"
#include "kite/cuda/runtime.hpp"

TEST_CASE("device_present never throws", "[gpu][runtime]") {
    const bool present = kite::cuda::device_present();
    INFO("device present: " << present);
    SUCCEED();
}

TEST_CASE("device facts are read off the device", "[gpu][runtime]") {
    KITE_NEED_GPU();
    const auto& d = kite::cuda::current_device();
    std::printf("kite-gpu-device %s sm_%d%d, %d SMs, %.1f GiB, L2 %.0f MiB\n", d.name.c_str(), d.major, d.minor,
                d.sm_count, static_cast<double>(d.global_bytes) / (1 << 30), static_cast<double>(d.l2_bytes) / (1 << 20));
    CHECK(d.sm_count > 0);
    CHECK(d.major >= 7);
    CHECK(d.global_bytes > 0);
}

TEST_CASE("device_buffer round-trips data and checks sizes", "[gpu][runtime]") {
    KITE_NEED_GPU();
    std::vector<std::int32_t> h(1000);
    std::iota(h.begin(), h.end(), -500);
    kite::cuda::device_buffer<std::int32_t> d{std::span<const std::int32_t>(h)};
    REQUIRE(d.size() == 1000);
    REQUIRE(d.bytes() == 4000);
    std::vector<std::int32_t> back(1000, 7);
    d.download(back);
    CHECK(back == h);
    std::vector<std::int32_t> wrong(999);
    KITE_REQUIRE_THROWS_CONTAINING(d.download(wrong), kite::shape_error, "expected equal sizes");
    KITE_REQUIRE_THROWS_CONTAINING(d.upload(wrong), kite::shape_error, "expected equal sizes");
    d.fill_bytes(0xFF);
    d.download(back);
    CHECK(back[0] == -1);
    kite::cuda::device_buffer<std::int32_t> moved(std::move(d));
    CHECK(moved.size() == 1000);
    CHECK(d.size() == 0);  // NOLINT: moved-from is empty by contract
    kite::cuda::device_buffer<float> empty(0);
    CHECK(empty.empty());
}

TEST_CASE("an allocation larger than the device is a cuda_error naming its size", "[gpu][runtime]") {
    KITE_NEED_GPU();
    const std::size_t too_many = kite::cuda::current_device().global_bytes;  // elements of 8 bytes: 8x the memory
    KITE_REQUIRE_THROWS_CONTAINING(kite::cuda::device_buffer<double>(too_many), kite::cuda::cuda_error,
                                   "cudaMalloc of");
    // the failure leaves no sticky error behind: the next allocation works
    kite::cuda::device_buffer<float> ok(16);
    CHECK(ok.size() == 16);
}
