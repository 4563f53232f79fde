# Resolves QSHARD_CUDA (AUTO|ON|OFF|EMULATED) into QSHARD_HAVE_CUDA and enables the CUDA language.
# EMULATED builds every CUDA target with the host compiler against the host emulation of CUDA
# (kernels/cuda/emulation, docs/cuda.md "Running the CUDA code on the host"): no nvcc, no GPU,
# and the device checks and device jobs run on the CPU.
set(QSHARD_HAVE_CUDA OFF)
set(QSHARD_CUDA_EMULATED OFF)
if(QSHARD_CUDA STREQUAL "EMULATED")
  set(QSHARD_HAVE_CUDA ON)
  set(QSHARD_CUDA_EMULATED ON)
  find_package(Python3 REQUIRED COMPONENTS Interpreter)
  add_subdirectory(${PROJECT_SOURCE_DIR}/kernels/cuda/emulation ${PROJECT_BINARY_DIR}/kernels/cuda/emulation)
elseif(NOT QSHARD_CUDA STREQUAL "OFF")
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(CMAKE_CUDA_ARCHITECTURES 80 90 CACHE STRING "CUDA architectures")
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(QSHARD_HAVE_CUDA ON)
  elseif(QSHARD_CUDA STREQUAL "ON")
    message(FATAL_ERROR "QSHARD_CUDA=ON but no nvcc was found")
  endif()
endif()
message(STATUS "qshard: CUDA kernels ${QSHARD_HAVE_CUDA} (emulated on the host: ${QSHARD_CUDA_EMULATED})")

# qshard_cuda_sources(OUT SOURCES...): the files to compile for SOURCES. Under emulation each .cu
# becomes generated C++ (kernels/cuda/emulation/rewrite_cu.py) whose messages name the .cu file.
function(qshard_cuda_sources out)
  set(result)
  foreach(source IN LISTS ARGN)
    get_filename_component(absolute ${source} ABSOLUTE)
    if(QSHARD_CUDA_EMULATED AND absolute MATCHES "\\.cu$")
      file(RELATIVE_PATH display ${PROJECT_SOURCE_DIR} ${absolute})
      set(rewrite ${PROJECT_SOURCE_DIR}/kernels/cuda/emulation/rewrite_cu.py)
      set(generated ${PROJECT_BINARY_DIR}/emulated/${display}.cc)
      add_custom_command(OUTPUT ${generated} DEPENDS ${absolute} ${rewrite}
                         COMMAND ${Python3_EXECUTABLE} ${rewrite} ${absolute} ${generated} ${display}
                         COMMENT "Rewriting ${display} for the host emulation of CUDA")
      list(APPEND result ${generated})
    else()
      list(APPEND result ${absolute})
    endif()
  endforeach()
  set(${out} ${result} PARENT_SCOPE)
endfunction()
