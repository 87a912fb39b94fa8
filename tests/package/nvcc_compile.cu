// Compiled only with KITE_ENABLE_CUDA=ON: kite's core headers must compile under nvcc, so CUDA
// translation units can include kite beside their kernels.
#include <kite/core.hpp>

__global__ void kite_scale_kernel(float* x, float a, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] *= a;
}

int main() {
    kite::matrix<float> m(2, 3, 1.0f);
    const float d = kite::simd::dot(m.row(0), m.row(1));
    return d == 3.0f ? 0 : 1;
}
