# Retrieval benchmarks, one fragment per part.
foreach(part IN ITEMS flat lexical pipeline embed)
  include(${CMAKE_CURRENT_LIST_DIR}/retrieval_${part}.cmake OPTIONAL)
endforeach()
