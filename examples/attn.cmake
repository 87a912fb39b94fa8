# Attention examples.
kite_add_example(kite-kv-cache-savings ${CMAKE_CURRENT_LIST_DIR}/04_kv_cache_savings.cpp)
