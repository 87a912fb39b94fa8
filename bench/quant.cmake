# Quantization benchmarks: quantized GEMV/GEMM beside float32 Eigen (bench_quant_matmul) and
# the method x bits x group quality table on real weights (bench_quant_quality, needs KITE_DATA
# or the checkpoint path as argument).
kite_add_bench(bench_quant_matmul SOURCES quant_matmul.cpp)
kite_add_bench(bench_quant_quality SOURCES quant_quality.cpp)
