# KV cache benchmarks: append/fork throughput and memory waste of paged vs contiguous caches
# on a mixed-length workload.
kite_add_bench(bench_kv SOURCES ${CMAKE_CURRENT_LIST_DIR}/kv_bench.cpp)
