# Quantization benchmarks: quantized GEMV/GEMM beside float32 Eigen (bench_quant_matmul).
kite_add_bench(bench_quant_matmul SOURCES quant_matmul.cpp)
