# nnc_add_model(): generate C for an ONNX model with `nnc emit-c` and add it
# to a CMake target. The C is regenerated when the model (or the nnc binary)
# changes; it needs only <math.h>, <stdint.h> and <stddef.h> (links libm).
#
#   include(path/to/nnc/cmake/nnc.cmake)
#   add_executable(app main.c)
#   nnc_add_model(app model.onnx NAME kws TARGET cortex-m4 OPTIONS -O2)
#
# Arguments:
#   NAME     symbol prefix and file name of the generated NAME.c / NAME.h
#            (default: the model file's name without extension)
#   TARGET   nnc's --target (default: host); one grammar for every command,
#            see `nnc --help`
#   OPTIONS  further arguments for `nnc emit-c` (e.g. -Os, --sram-budget 64KiB)
#   OUTPUT_DIR  where the files go (default: ${CMAKE_CURRENT_BINARY_DIR}/nnc/NAME)
#
# The nnc executable is NNC_EXECUTABLE (a cache variable; found on PATH when
# not set). The include directory of NAME.h is added to the target.
function(nnc_add_model target model)
  cmake_parse_arguments(PARSE_ARGV 2 NNC "" "NAME;TARGET;OUTPUT_DIR" "OPTIONS")
  if(NNC_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "nnc_add_model: unknown arguments ${NNC_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT TARGET ${target})
    message(FATAL_ERROR "nnc_add_model: ${target} is not a target")
  endif()
  if(NOT NNC_EXECUTABLE)
    find_program(NNC_EXECUTABLE nnc)
  endif()
  if(NOT NNC_EXECUTABLE)
    message(FATAL_ERROR "nnc_add_model: nnc not found; set NNC_EXECUTABLE")
  endif()
  get_filename_component(model_path "${model}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
  if(NOT EXISTS "${model_path}")
    message(FATAL_ERROR "nnc_add_model: no model at ${model_path}")
  endif()
  if(NOT NNC_NAME)
    get_filename_component(NNC_NAME "${model_path}" NAME_WE)
  endif()
  if(NOT NNC_TARGET)
    set(NNC_TARGET host)
  endif()
  if(NOT NNC_OUTPUT_DIR)
    set(NNC_OUTPUT_DIR "${CMAKE_CURRENT_BINARY_DIR}/nnc/${NNC_NAME}")
  endif()
  set(c "${NNC_OUTPUT_DIR}/${NNC_NAME}.c")
  set(h "${NNC_OUTPUT_DIR}/${NNC_NAME}.h")
  add_custom_command(
    OUTPUT "${c}" "${h}"
    COMMAND "${NNC_EXECUTABLE}" emit-c "${model_path}" -o "${NNC_OUTPUT_DIR}"
            --name "${NNC_NAME}" --target "${NNC_TARGET}" ${NNC_OPTIONS}
    DEPENDS "${model_path}" "${NNC_EXECUTABLE}"
    COMMENT "nnc: generating ${NNC_NAME}.c from ${model}"
    VERBATIM)
  target_sources(${target} PRIVATE "${c}" "${h}")
  target_include_directories(${target} PRIVATE "${NNC_OUTPUT_DIR}")
  if(NOT MSVC)
    target_link_libraries(${target} PRIVATE m)
  endif()
endfunction()
