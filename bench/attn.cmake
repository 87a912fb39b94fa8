# Attention benchmarks: prefill (flash vs reference; PyTorch in attn_vs_torch.py) and decode
# over contiguous vs paged caches; attn_memory measures peak extra memory of the kernels.
kite_add_bench(bench_attn SOURCES ${CMAKE_CURRENT_LIST_DIR}/attn_bench.cpp)
kite_add_bench(bench_attn_memory SOURCES ${CMAKE_CURRENT_LIST_DIR}/attn_memory.cpp)
