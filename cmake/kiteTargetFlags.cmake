# kite_target_flags(<target>): warnings and -march=native for kite's own tests, examples and
# benchmarks. Never applied to kite::kite, whose users pick their own architecture flags.
include(CheckCXXCompilerFlag)
check_cxx_compiler_flag(-march=native KITE_HAVE_MARCH_NATIVE)

# PORTABLE: warnings only, never -march=native (tests of the portable kernel twins).
function(kite_target_flags target)
  cmake_parse_arguments(ARG "PORTABLE" "" "" ${ARGN})
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wno-psabi)
  endif()
  if(KITE_NATIVE AND KITE_HAVE_MARCH_NATIVE AND NOT ARG_PORTABLE)
    target_compile_options(${target} PRIVATE -march=native)
  endif()
endfunction()
