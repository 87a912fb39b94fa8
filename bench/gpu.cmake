# kite_gpu_bench: kite's CUDA kernels timed with CUDA events (median of many launches, inputs
# rotated so that repeated runs do not measure the L2), one JSON line per case. bench/gpu/run.sh
# runs it beside PyTorch's scaled_dot_product_attention (flash backend) and prints the table.
if(TARGET kite::cuda)
  file(GLOB _kite_gpu_bench_sources CONFIGURE_DEPENDS "${CMAKE_CURRENT_SOURCE_DIR}/gpu/*.cpp")
  add_executable(kite_gpu_bench ${_kite_gpu_bench_sources})
  target_link_libraries(kite_gpu_bench PRIVATE kite::cuda)
  target_include_directories(kite_gpu_bench PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/gpu)
  kite_target_flags(kite_gpu_bench)
endif()
