# kite_target_flags(<target>): warnings and -march=native for kite's own tests, examples and
# benchmarks. Never applied to kite::kite, whose users pick their own architecture flags.
include(CheckCXXCompilerFlag)
check_cxx_compiler_flag(-march=native KITE_HAVE_MARCH_NATIVE)

function(kite_target_flags target)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wno-psabi)
  endif()
  if(KITE_NATIVE AND KITE_HAVE_MARCH_NATIVE)
    target_compile_options(${target} PRIVATE -march=native)
  endif()
endfunction()
