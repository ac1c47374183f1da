# Configures a clean tree with CMake's Unix Makefiles generator (what most
# users and packagers type) and builds graft-vulkan, whose shader headers are
# generated into folders that Make, unlike Ninja, does not create itself.
file(REMOVE_RECURSE ${WORK_DIR})
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "command failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
endfunction()
run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR} -G "Unix Makefiles" -DCMAKE_BUILD_TYPE=Release
    -DGRAFT_BUILD_TESTS=OFF -DGRAFT_BUILD_BENCH=OFF -DGRAFT_BUILD_TOOLS=OFF -DGRAFT_BUILD_DOCS=OFF
    -DGRAFT_BUILD_ONEDNN=OFF -DGRAFT_BUILD_JIT=OFF -DGRAFT_BUILD_VULKAN=ON)
run(${CMAKE_COMMAND} --build ${WORK_DIR} --target graft-vulkan -j2)
file(GLOB_RECURSE plugin ${WORK_DIR}/libgraft-vulkan.so)
if(NOT plugin)
  message(FATAL_ERROR "the Makefiles build made no libgraft-vulkan.so")
endif()
file(REMOVE_RECURSE ${WORK_DIR})
