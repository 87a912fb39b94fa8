# Debian 12's xsimd 8.1 exports `xsimd` with INTERFACE_LINK_LIBRARIES "xtl" but its config
# never looks for xtl, so without a target named xtl every consumer links "-lxtl" and fails.
# xsimd needs xtl only for xtl::xcomplex support, which kite does not use: use xtl's own
# config when it is installed, otherwise stand in an empty interface target.
if(TARGET xsimd AND NOT TARGET xtl)
  get_target_property(_kite_xsimd_links xsimd INTERFACE_LINK_LIBRARIES)
  if(_kite_xsimd_links MATCHES "(^|;)xtl($|;)")
    find_package(xtl QUIET)
    if(NOT TARGET xtl)
      add_library(xtl INTERFACE IMPORTED)
    endif()
  endif()
  unset(_kite_xsimd_links)
endif()
