# Helpers that keep each component's CMakeLists.txt to a few lines.

# qshard_library(NAME DIR DEPS...): a static library of every .cc file directly in DIR.
function(qshard_library name dir)
  file(GLOB sources CONFIGURE_DEPENDS ${dir}/*.cc)
  if(sources)
    add_library(${name} STATIC ${sources})
    target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
    target_link_libraries(${name} PUBLIC ${ARGN})
  else()  # header-only component
    add_library(${name} INTERFACE)
    target_include_directories(${name} INTERFACE ${PROJECT_SOURCE_DIR})
    target_link_libraries(${name} INTERFACE ${ARGN})
  endif()
endfunction()

# qshard_tests(DIR DEPS...): one GoogleTest executable per DIR/*_test.cc, registered with ctest,
# with tests/test_main.cc's main. Tests run from the source tree root so they find ../shared and
# tests/reference.
function(qshard_tests dir)
  file(GLOB tests CONFIGURE_DEPENDS ${dir}/*_test.cc)
  foreach(test_source ${tests})
    get_filename_component(test_name ${test_source} NAME_WE)
    add_executable(${test_name} ${test_source})
    target_link_libraries(${test_name} PRIVATE ${ARGN} qshard_test_main)
    gtest_discover_tests(${test_name} WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
                         DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 900)
  endforeach()
endfunction()
