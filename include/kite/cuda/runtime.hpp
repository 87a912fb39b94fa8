#pragma once
/// @file kite/cuda/runtime.hpp
/// The host side of kite's CUDA backend: errors, device queries, RAII device memory and an
/// event timer. Plain C++ over the CUDA runtime API (any host compiler; no nvcc needed), so the
/// code that drives kite's kernels compiles with g++ or clang++ and links kite::cuda.
///
///   if (!kite::cuda::device_present()) return;           // no GPU: skip, don't fail
///   kite::cuda::device_buffer<float> x(1024);             // cudaMalloc, freed by the destructor
///   x.upload(host_span);  x.download(host_span);          // synchronous copies, sizes checked
///
/// Every CUDA call is checked: a failure is a kite::cuda::cuda_error naming the call, the
/// CUDA error string and the size or argument involved.

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <utility>

#include "kite/core/config.hpp"
#include "kite/core/error.hpp"

namespace kite::cuda {

/// A CUDA runtime call failed (out of device memory, an illegal address, no device...).
class cuda_error : public kite::error {
public:
    using kite::error::error;
};

/// Element types of kite's device tensors.
enum class dtype : std::uint8_t { f32 = 0, bf16 = 1, fp16 = 2 };

constexpr const char* dtype_name(dtype t) noexcept {
    switch (t) {
        case dtype::f32: return "f32";
        case dtype::bf16: return "bf16";
        case dtype::fp16: return "fp16";
    }
    return "?";
}
constexpr std::size_t dtype_bytes(dtype t) noexcept { return t == dtype::f32 ? 4 : 2; }

namespace detail {
inline void check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) [[unlikely]]
        kite::detail::raise<cuda_error>(what, " failed: ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")");
}
}  // namespace detail

/// KITE_CUDA_CHECK(call): throws cuda_error naming the call when it does not return cudaSuccess.
#define KITE_CUDA_CHECK(call) ::kite::cuda::detail::check((call), #call)

/// Throws cuda_error when the last kernel launch failed (bad configuration, too much shared memory).
inline void check_launch(const char* kernel) {
    const cudaError_t e = cudaPeekAtLastError();
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        kite::detail::raise<cuda_error>("launch of ", kernel, " failed: ", cudaGetErrorName(e), " (",
                                        cudaGetErrorString(e), ")");
    }
}

/// True when a CUDA device can be used (a driver and at least one GPU). Never throws.
inline bool device_present() noexcept {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    return n > 0;
}

/// Facts of the current device that kite's launch planning uses.
struct device_info {
    std::string name;
    int major = 0, minor = 0;       ///< compute capability
    int sm_count = 0;               ///< multiprocessors
    std::size_t global_bytes = 0;   ///< device memory
    std::size_t l2_bytes = 0;
    std::size_t smem_per_block_optin = 0;  ///< the most dynamic shared memory a block may opt in to
};

/// The current device's facts (queried once per device and cached).
inline const device_info& current_device() {
    static thread_local int cached_dev = -1;
    static thread_local device_info info;
    int dev = 0;
    KITE_CUDA_CHECK(cudaGetDevice(&dev));
    if (dev != cached_dev) {
        cudaDeviceProp p{};
        KITE_CUDA_CHECK(cudaGetDeviceProperties(&p, dev));
        info.name = p.name;
        info.major = p.major;
        info.minor = p.minor;
        info.sm_count = p.multiProcessorCount;
        info.global_bytes = p.totalGlobalMem;
        info.l2_bytes = static_cast<std::size_t>(p.l2CacheSize);
        info.smem_per_block_optin = p.sharedMemPerBlockOptin;
        cached_dev = dev;
    }
    return info;
}

/// Device memory for n elements of T (trivially copyable), freed by the destructor. Move-only.
template <class T>
class device_buffer {
    static_assert(std::is_trivially_copyable_v<T>, "device_buffer<T>: T must be trivially copyable");

public:
    device_buffer() = default;
    explicit device_buffer(index_t n) : n_(n) {
        if (n_ == 0) return;
        void* p = nullptr;
        const cudaError_t e = cudaMalloc(&p, n_ * sizeof(T));
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            kite::detail::raise<cuda_error>("device_buffer: cudaMalloc of ", n_ * sizeof(T), " bytes (", n_,
                                            " elements) failed: ", cudaGetErrorString(e));
        }
        p_ = static_cast<T*>(p);
    }
    /// A buffer holding a copy of host data.
    explicit device_buffer(std::span<const T> host) : device_buffer(host.size()) { upload(host); }
    device_buffer(const device_buffer&) = delete;
    device_buffer& operator=(const device_buffer&) = delete;
    device_buffer(device_buffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
    device_buffer& operator=(device_buffer&& o) noexcept {
        if (this != &o) {
            release();
            p_ = std::exchange(o.p_, nullptr);
            n_ = std::exchange(o.n_, 0);
        }
        return *this;
    }
    ~device_buffer() { release(); }

    T* data() noexcept { return p_; }
    const T* data() const noexcept { return p_; }
    index_t size() const noexcept { return n_; }
    std::size_t bytes() const noexcept { return n_ * sizeof(T); }
    bool empty() const noexcept { return n_ == 0; }

    /// Copies host.size() == size() elements to the device (synchronous).
    void upload(std::span<const T> host) {
        KITE_REQUIRE(host.size() == n_, shape_error, "device_buffer::upload: ", host.size(),
                     " host elements into a buffer of ", n_, "; expected equal sizes");
        if (n_) KITE_CUDA_CHECK(cudaMemcpy(p_, host.data(), bytes(), cudaMemcpyHostToDevice));
    }
    /// Copies size() elements to host (synchronous; waits for the device's work on the default stream).
    void download(std::span<T> host) const {
        KITE_REQUIRE(host.size() == n_, shape_error, "device_buffer::download: ", n_,
                     " device elements into ", host.size(), " host elements; expected equal sizes");
        if (n_) KITE_CUDA_CHECK(cudaMemcpy(host.data(), p_, bytes(), cudaMemcpyDeviceToHost));
    }
    /// Sets every byte to `byte` (tests poison outputs with 0xFF: a NaN in f32, bf16 and fp16).
    void fill_bytes(int byte) {
        if (n_) KITE_CUDA_CHECK(cudaMemset(p_, byte, bytes()));
    }

private:
    void release() noexcept {
        if (p_) (void)cudaFree(p_);
        p_ = nullptr;
        n_ = 0;
    }
    T* p_ = nullptr;
    index_t n_ = 0;
};

/// Times device work on a stream with CUDA events (milliseconds).
class event_timer {
public:
    event_timer() {
        KITE_CUDA_CHECK(cudaEventCreate(&start_));
        KITE_CUDA_CHECK(cudaEventCreate(&stop_));
    }
    event_timer(const event_timer&) = delete;
    event_timer& operator=(const event_timer&) = delete;
    ~event_timer() {
        (void)cudaEventDestroy(start_);
        (void)cudaEventDestroy(stop_);
    }
    void start(cudaStream_t s = nullptr) { KITE_CUDA_CHECK(cudaEventRecord(start_, s)); }
    /// Records the stop event, waits for it and returns the elapsed milliseconds.
    float stop(cudaStream_t s = nullptr) {
        KITE_CUDA_CHECK(cudaEventRecord(stop_, s));
        KITE_CUDA_CHECK(cudaEventSynchronize(stop_));
        float ms = 0;
        KITE_CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
        return ms;
    }

private:
    cudaEvent_t start_{}, stop_{};
};

/// Waits for all work on the device; throws the first asynchronous error (an illegal address...).
inline void synchronize() { KITE_CUDA_CHECK(cudaDeviceSynchronize()); }

}  // namespace kite::cuda
