# Library packaging (included at the end of the top-level CMakeLists.txt, after every target):
#   - the umbrella target dynaprec::dynaprec (in the build tree too, as an alias);
#   - `cmake --install` puts the headers (include/dynaprec), every dynaprec static library, the
#     CLI and a CMake package (lib/cmake/dynaprec) under the prefix, so that
#       find_package(dynaprec REQUIRED)
#       target_link_libraries(app PRIVATE dynaprec::dynaprec)
#     works from any project (tests/install/ checks it);
#   - the libraries are position-independent, so they link into shared objects (the Python
#     module, a user's plugin); -fno-semantic-interposition keeps the code what it is without PIC.
#
# The libraries exported are found, not listed: every STATIC library named dynaprec_* (test,
# benchmark and demo helpers excepted) plus every in-project library they link, so a new library
# needs no change here. The packages the installed libraries need are derived from the imported
# targets they link (table below); an unknown one is reported at configure time.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# --- which targets: dynaprec_* static libraries and their in-project dependencies ---
get_property(_dp_all DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY BUILDSYSTEM_TARGETS)
set(_dp_libs)
foreach(_t IN LISTS _dp_all)
  get_target_property(_type ${_t} TYPE)
  if(_type STREQUAL "STATIC_LIBRARY" AND _t MATCHES "^dynaprec_" AND NOT _t MATCHES "test|bench|fuzz|demo")
    list(APPEND _dp_libs ${_t})
  endif()
endforeach()

# Follow the link interface: in-project targets join the export; imported ones name packages.
set(_dp_imported)
set(_dp_queue ${_dp_libs})
while(_dp_queue)
  list(POP_FRONT _dp_queue _t)
  foreach(_prop LINK_LIBRARIES INTERFACE_LINK_LIBRARIES)
    get_target_property(_deps ${_t} ${_prop})
    if(NOT _deps)
      continue()
    endif()
    foreach(_d IN LISTS _deps)
      string(REGEX REPLACE "^\\$<LINK_ONLY:(.*)>$" "\\1" _d "${_d}")
      if(_d MATCHES "^\\$<" OR NOT TARGET ${_d})
        continue()  # generator expressions, plain library names or flags
      endif()
      get_target_property(_imp ${_d} IMPORTED)
      get_target_property(_alias ${_d} ALIASED_TARGET)
      if(_alias)
        set(_d ${_alias})
      endif()
      if(_imp)
        list(APPEND _dp_imported ${_d})
      elseif(NOT _d IN_LIST _dp_libs)
        list(APPEND _dp_libs ${_d})
        list(APPEND _dp_queue ${_d})
      endif()
    endforeach()
  endforeach()
endwhile()
list(REMOVE_DUPLICATES _dp_imported)

# Imported target -> the package that defines it, in the order the packages must be found.
set(_dp_pkg_order Threads ZLIB Protobuf ONNX hwy OpenMP dnnl nlohmann_json fmt spdlog gRPC CLI11
                    Freetype)
set(_dp_pkg_Threads "^Threads::")
set(_dp_pkg_ZLIB "^ZLIB::")
set(_dp_pkg_Protobuf "^protobuf::")
set(_dp_pkg_ONNX "^onnx")
set(_dp_pkg_hwy "^hwy::")
set(_dp_pkg_OpenMP "^OpenMP::")
set(_dp_pkg_dnnl "^DNNL::|^dnnl")
set(_dp_pkg_nlohmann_json "^nlohmann_json::")
set(_dp_pkg_fmt "^fmt::")
set(_dp_pkg_spdlog "^spdlog::")
set(_dp_pkg_gRPC "^gRPC::")
set(_dp_pkg_CLI11 "^CLI11::")
set(_dp_pkg_Freetype "^Freetype::")
set(DYNAPREC_PACKAGE_DEPS)
foreach(_d IN LISTS _dp_imported)
  set(_known FALSE)
  foreach(_p IN LISTS _dp_pkg_order)
    if(_d MATCHES "${_dp_pkg_${_p}}")
      list(APPEND DYNAPREC_PACKAGE_DEPS ${_p})
      set(_known TRUE)
    endif()
  endforeach()
  if(NOT _known)
    message(WARNING "dynaprec packaging: no package known for the imported target ${_d} "
                    "(add it to cmake/dynaprecInstall.cmake)")
  endif()
endforeach()
set(_dp_sorted)
foreach(_p IN LISTS _dp_pkg_order)
  if(_p IN_LIST DYNAPREC_PACKAGE_DEPS)
    list(APPEND _dp_sorted ${_p})
  endif()
endforeach()
set(DYNAPREC_PACKAGE_DEPS ${_dp_sorted})

# --- PIC, and include directories that mean the source tree here and the prefix when installed ---
foreach(_t IN LISTS _dp_libs)
  set_target_properties(${_t} PROPERTIES POSITION_INDEPENDENT_CODE ON)
  target_compile_options(${_t} PRIVATE -fno-semantic-interposition)
  get_target_property(_inc ${_t} INTERFACE_INCLUDE_DIRECTORIES)
  if(NOT _inc)
    continue()
  endif()
  set(_new)
  foreach(_i IN LISTS _inc)
    if(_i MATCHES "^\\$<" OR NOT IS_ABSOLUTE "${_i}")
      list(APPEND _new "${_i}")
    else()
      list(APPEND _new "$<BUILD_INTERFACE:${_i}>")
    endif()
  endforeach()
  list(APPEND _new "$<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>")
  list(REMOVE_DUPLICATES _new)
  set_target_properties(${_t} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_new}")
endforeach()

# --- the umbrella target: what an application links ---
add_library(dynaprec_all INTERFACE)
set_target_properties(dynaprec_all PROPERTIES EXPORT_NAME dynaprec)
target_link_libraries(dynaprec_all INTERFACE dynaprec_runtime dynaprec_device dynaprec_import
                                              ${CMAKE_DL_LIBS})
if(TARGET dynaprec_remote)  # the gRPC device: install_remote_backend() (remote.h)
  target_link_libraries(dynaprec_all INTERFACE dynaprec_remote)
endif()
target_compile_features(dynaprec_all INTERFACE cxx_std_20)
add_library(dynaprec::dynaprec ALIAS dynaprec_all)
set(DYNAPREC_EXPORTED_LIBS ${_dp_libs})

# --- install rules ---
install(DIRECTORY "${CMAKE_SOURCE_DIR}/include/dynaprec"
        DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}" FILES_MATCHING PATTERN "*.h")
install(TARGETS ${_dp_libs} dynaprec_all EXPORT dynaprecTargets
        ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}"
        LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}")
if(TARGET dynaprec)
  install(TARGETS dynaprec RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}")
endif()
set(DYNAPREC_CMAKE_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/dynaprec")
install(EXPORT dynaprecTargets NAMESPACE dynaprec:: DESTINATION "${DYNAPREC_CMAKE_DIR}")
configure_package_config_file("${CMAKE_SOURCE_DIR}/cmake/dynaprecConfig.cmake.in"
                              "${CMAKE_BINARY_DIR}/dynaprecConfig.cmake"
                              INSTALL_DESTINATION "${DYNAPREC_CMAKE_DIR}")
write_basic_package_version_file("${CMAKE_BINARY_DIR}/dynaprecConfigVersion.cmake"
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES "${CMAKE_BINARY_DIR}/dynaprecConfig.cmake"
              "${CMAKE_BINARY_DIR}/dynaprecConfigVersion.cmake"
        DESTINATION "${DYNAPREC_CMAKE_DIR}")
