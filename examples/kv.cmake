# KV cache examples.
kite_add_example(kite-paged-sampling ${CMAKE_CURRENT_LIST_DIR}/05_paged_sampling.cpp)
