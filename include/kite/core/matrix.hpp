#pragma once
/// @file kite/core/matrix.hpp
/// Row-major matrix views and an owning matrix, interoperable with Eigen.
///
///   matrix_view<const float> q = ...;      // (rows, cols), row stride >= cols
///   auto m = kite::as_eigen(q);            // Eigen::Map, no copy
///   Eigen::MatrixXf e(...);                // column-major: not viewable (static_assert)
///   kite::matrix_view<float> v = kite::view(row_major_eigen_matrix);
///
/// Vectors are std::span. Shapes are runtime values; all views are non-owning.

#include <cstddef>
#include <span>
#include <type_traits>

#include "kite/core/buffer.hpp"
#include "kite/core/config.hpp"
#include "kite/core/diagnostics.hpp"
// GCC 12 reports the AVX-512 packet code of Eigen's products (GEMM kernels, reductions) as
// maybe-uninitialized wherever a translation unit instantiates them (GCC bug 105593); the
// pragma region has to cover Eigen's own text, so it wraps the include.
KITE_GCC12_AVX512_UNINIT_BEGIN
#include <Eigen/Core>
KITE_GCC12_AVX512_UNINIT_END
#include "kite/core/error.hpp"

namespace kite {

/// Non-owning row-major view of a `rows x cols` matrix whose rows are `stride` elements apart.
/// `T` may be const-qualified. Copying a view is cheap and never copies elements.
template <class T>
class matrix_view {
public:
    using element_type = T;
    using value_type = std::remove_cv_t<T>;

    constexpr matrix_view() noexcept = default;
    constexpr matrix_view(T* data, index_t rows, index_t cols) noexcept
        : data_(data), rows_(rows), cols_(cols), stride_(cols) {}
    constexpr matrix_view(T* data, index_t rows, index_t cols, index_t stride) noexcept
        : data_(data), rows_(rows), cols_(cols), stride_(stride) {}
    /// A contiguous span viewed as `rows x cols`; throws shape_error when the sizes disagree.
    matrix_view(std::span<T> values, index_t rows, index_t cols)
        : data_(values.data()), rows_(rows), cols_(cols), stride_(cols) {
        KITE_REQUIRE(values.size() == rows * cols, shape_error, "matrix_view: span of ",
                     values.size(), " elements cannot be viewed as ", rows, " x ", cols,
                     "; expected ", rows * cols, " elements");
    }
    /// Implicit conversion from a mutable view to a const view.
    template <class U>
        requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>)
    constexpr matrix_view(const matrix_view<U>& o) noexcept
        : data_(o.data()), rows_(o.rows()), cols_(o.cols()), stride_(o.stride()) {}

    constexpr T* data() const noexcept { return data_; }
    constexpr index_t rows() const noexcept { return rows_; }
    constexpr index_t cols() const noexcept { return cols_; }
    constexpr index_t stride() const noexcept { return stride_; }
    constexpr index_t size() const noexcept { return rows_ * cols_; }
    constexpr bool empty() const noexcept { return rows_ == 0 || cols_ == 0; }
    constexpr bool contiguous() const noexcept { return stride_ == cols_ || rows_ <= 1; }

    constexpr T& operator()(index_t r, index_t c) const noexcept { return data_[r * stride_ + c]; }
    constexpr std::span<T> row(index_t r) const noexcept { return {data_ + r * stride_, cols_}; }
    /// Rows [first, first + count).
    constexpr matrix_view rows_slice(index_t first, index_t count) const noexcept {
        return {data_ + first * stride_, count, cols_, stride_};
    }
    /// Sub-matrix starting at (r, c) of shape (nr, nc).
    constexpr matrix_view block(index_t r, index_t c, index_t nr, index_t nc) const noexcept {
        return {data_ + r * stride_ + c, nr, nc, stride_};
    }
    /// All elements as one span (only valid when contiguous()).
    constexpr std::span<T> flat() const noexcept { return {data_, rows_ * cols_}; }

private:
    T* data_ = nullptr;
    index_t rows_ = 0;
    index_t cols_ = 0;
    index_t stride_ = 0;
};

/// Owning row-major matrix stored in an aligned_buffer (64-byte aligned, rows contiguous).
template <class T>
class matrix {
public:
    using value_type = T;

    matrix() = default;
    matrix(index_t rows, index_t cols) : buf_(elements(rows, cols)), rows_(rows), cols_(cols) {}
    matrix(index_t rows, index_t cols, uninitialized_t)
        : buf_(elements(rows, cols), uninitialized), rows_(rows), cols_(cols) {}
    matrix(index_t rows, index_t cols, const T& value)
        : buf_(elements(rows, cols), value), rows_(rows), cols_(cols) {}
    /// Deep copy of any view.
    explicit matrix(matrix_view<const T> v) : matrix(v.rows(), v.cols(), uninitialized) {
        for (index_t r = 0; r < rows_; ++r) std::copy_n(v.row(r).data(), cols_, row(r).data());
    }

    matrix(matrix&&) noexcept = default;
    matrix& operator=(matrix&&) noexcept = default;
    matrix clone() const { return matrix(view()); }

    index_t rows() const noexcept { return rows_; }
    index_t cols() const noexcept { return cols_; }
    index_t size() const noexcept { return rows_ * cols_; }
    bool empty() const noexcept { return size() == 0; }
    T* data() noexcept { return buf_.data(); }
    const T* data() const noexcept { return buf_.data(); }

    T& operator()(index_t r, index_t c) noexcept { return buf_[r * cols_ + c]; }
    const T& operator()(index_t r, index_t c) const noexcept { return buf_[r * cols_ + c]; }
    std::span<T> row(index_t r) noexcept { return {buf_.data() + r * cols_, cols_}; }
    std::span<const T> row(index_t r) const noexcept { return {buf_.data() + r * cols_, cols_}; }
    std::span<T> flat() noexcept { return buf_.span(); }
    std::span<const T> flat() const noexcept { return buf_.span(); }

    matrix_view<T> view() noexcept { return {buf_.data(), rows_, cols_}; }
    matrix_view<const T> view() const noexcept { return {buf_.data(), rows_, cols_}; }
    operator matrix_view<T>() noexcept { return view(); }
    operator matrix_view<const T>() const noexcept { return view(); }

    /// Reshapes to rows x cols (contents unspecified unless the size is unchanged).
    void resize(index_t rows, index_t cols) {
        buf_.resize(elements(rows, cols), uninitialized);
        rows_ = rows;
        cols_ = cols;
    }

private:
    static index_t elements(index_t rows, index_t cols) {
        return checked_mul(rows, cols, "matrix of ", rows, " x ", cols);
    }

    aligned_buffer<T> buf_;
    index_t rows_ = 0;
    index_t cols_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Eigen interop

template <class T>
using eigen_row_major = Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, Eigen::Dynamic,
                                      Eigen::RowMajor>;

template <class T>
using eigen_map = std::conditional_t<
    std::is_const_v<T>,
    Eigen::Map<const eigen_row_major<T>, Eigen::Unaligned, Eigen::OuterStride<>>,
    Eigen::Map<eigen_row_major<T>, Eigen::Unaligned, Eigen::OuterStride<>>>;

/// An Eigen::Map over a kite view (no copy). Works with Eigen::Ref parameters.
template <class T>
eigen_map<T> as_eigen(matrix_view<T> v) {
    return eigen_map<T>(v.data(), static_cast<Eigen::Index>(v.rows()),
                        static_cast<Eigen::Index>(v.cols()),
                        Eigen::OuterStride<>(static_cast<Eigen::Index>(v.stride())));
}
template <class T>
eigen_map<T> as_eigen(matrix<T>& m) {
    return as_eigen(m.view());
}
template <class T>
eigen_map<const T> as_eigen(const matrix<T>& m) {
    return as_eigen(m.view());
}

/// A kite view of a row-major Eigen object with direct access (Matrix, Map, Ref, Block).
/// Column-major matrices are refused at compile time: kite is row-major throughout.
template <class E>
    requires requires(E& e) {
        e.data();
        e.outerStride();
        std::remove_cvref_t<E>::IsRowMajor;
    }
auto view(E&& m) {
    using M = std::remove_cvref_t<E>;
    static_assert(M::IsRowMajor || M::ColsAtCompileTime == 1,
                  "kite::view needs a row-major Eigen matrix (Eigen::RowMajor)");
    using S = std::remove_pointer_t<decltype(m.data())>;
    const auto stride = M::IsRowMajor ? static_cast<index_t>(m.outerStride()) : index_t{1};
    return matrix_view<S>(m.data(), static_cast<index_t>(m.rows()),
                          static_cast<index_t>(m.cols()), stride);
}

/// Throws shape_error unless `v` is `rows x cols`; `what` names the argument.
template <class T>
void require_shape(const matrix_view<T>& v, index_t rows, index_t cols, const char* what) {
    KITE_REQUIRE(v.rows() == rows && v.cols() == cols, shape_error, what, " has shape ",
                 v.rows(), " x ", v.cols(), "; expected ", rows, " x ", cols);
}

}  // namespace kite
