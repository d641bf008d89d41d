# The `dynaprec` Python module (python/dynaprec_module.cc), built when pybind11 (Debian:
# pybind11-dev / python3-pybind11) and the Python 3 headers (python3-dev) are found. It lands in
# BUILD/python/ (PYTHONPATH=BUILD/python) and installs to DYNAPREC_PYTHON_INSTALL_DIR.
# Not with the sanitizers: an instrumented module cannot load into an uninstrumented python.
option(DYNAPREC_PYTHON "Build the dynaprec Python module when pybind11 is found" ON)
if(NOT DYNAPREC_PYTHON OR DYNAPREC_SANITIZE OR DYNAPREC_TSAN OR DYNAPREC_FUZZ)
  return()
endif()

# Debian's interpreter (with python3-numpy), not whichever python3 comes first on PATH.
if(NOT DEFINED Python_EXECUTABLE AND EXISTS /usr/bin/python3)
  set(Python_EXECUTABLE /usr/bin/python3)
endif()
find_package(Python 3.8 COMPONENTS Interpreter Development.Module)
if(Python_FOUND)
  set(PYBIND11_FINDPYTHON ON)
  find_package(pybind11 2.6 CONFIG QUIET)
endif()
if(NOT Python_FOUND OR NOT pybind11_FOUND)
  message(STATUS "dynaprec: Python module not built (needs python3-dev and pybind11-dev)")
  return()
endif()
message(STATUS "dynaprec: Python module for ${Python_EXECUTABLE} (pybind11 ${pybind11_VERSION})")

pybind11_add_module(dynaprec_python MODULE python/dynaprec_module.cc)
set_target_properties(dynaprec_python PROPERTIES
  OUTPUT_NAME dynaprec
  LIBRARY_OUTPUT_DIRECTORY "${CMAKE_BINARY_DIR}/python")
target_compile_definitions(dynaprec_python PRIVATE DYNAPREC_VERSION="${PROJECT_VERSION}")
if(TARGET dynaprec_remote)  # device="grpc://HOST:PORT", as the CLI's --device
  target_compile_definitions(dynaprec_python PRIVATE DYNAPREC_WITH_REMOTE=1)
endif()
# The static libraries' symbols stay inside the module (no clashes with other extensions).
target_link_libraries(dynaprec_python PRIVATE dynaprec::dynaprec nlohmann_json::nlohmann_json)
target_link_options(dynaprec_python PRIVATE -Wl,--exclude-libs,ALL)

set(DYNAPREC_PYTHON_INSTALL_DIR "${CMAKE_INSTALL_LIBDIR}/python3/dist-packages"
    CACHE STRING "where `cmake --install` puts the dynaprec Python module")
install(TARGETS dynaprec_python LIBRARY DESTINATION "${DYNAPREC_PYTHON_INSTALL_DIR}")
set(DYNAPREC_PYTHON_BUILT ON)
