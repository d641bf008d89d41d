# Packaging, the examples, the Python module and their tests. The top-level CMakeLists.txt
# runs this deferred, at the end of its own processing, so it sees every library defined there.
include("${CMAKE_SOURCE_DIR}/cmake/dynaprecInstall.cmake")
# examples/ in the tree (examples/CMakeLists.txt builds them against an installed dynaprec).
add_executable(dynaprec_example_run_model "${CMAKE_SOURCE_DIR}/examples/run_model.cpp")
set_target_properties(dynaprec_example_run_model PROPERTIES
  OUTPUT_NAME run_model RUNTIME_OUTPUT_DIRECTORY "${CMAKE_BINARY_DIR}/examples")
target_link_libraries(dynaprec_example_run_model PRIVATE dynaprec::dynaprec)
include("${CMAKE_SOURCE_DIR}/cmake/dynaprecPython.cmake")

if(DYNAPREC_TESTS AND NOT (DYNAPREC_SANITIZE OR DYNAPREC_TSAN OR DYNAPREC_FUZZ))
  # `cmake --install` into a temporary prefix, then examples/ built out of tree against it with
  # find_package(dynaprec); then that example and `dynaprec run` on the real models (skip: 77).
  add_test(NAME install.find_package
           COMMAND bash ${CMAKE_SOURCE_DIR}/tests/install/test_install.sh package
                   ${CMAKE_BINARY_DIR} ${CMAKE_SOURCE_DIR})
  set_tests_properties(install.find_package PROPERTIES TIMEOUT 900
                       FIXTURES_SETUP dynaprec_installed RESOURCE_LOCK dynaprec_install_prefix)
  add_test(NAME install.example_vs_cli
           COMMAND bash ${CMAKE_SOURCE_DIR}/tests/install/test_install.sh compare
                   ${CMAKE_BINARY_DIR} ${CMAKE_SOURCE_DIR})
  set_tests_properties(install.example_vs_cli PROPERTIES TIMEOUT 900 SKIP_RETURN_CODE 77
                       FIXTURES_REQUIRED dynaprec_installed)
  if(DYNAPREC_PYTHON_BUILT)
    add_test(NAME python.pytest
             COMMAND ${Python_EXECUTABLE} -m pytest -q -p no:cacheprovider
                     ${CMAKE_SOURCE_DIR}/python/tests)
    set_tests_properties(python.pytest PROPERTIES TIMEOUT 900 ENVIRONMENT
      "PYTHONPATH=${CMAKE_BINARY_DIR}/python;DYNAPREC_CLI=$<TARGET_FILE:dynaprec>;PYTHONDONTWRITEBYTECODE=1")
  endif()
endif()
