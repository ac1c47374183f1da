# Installs graft from BUILD_DIR into a prefix outside the build tree, then,
# with no LD_LIBRARY_PATH or GRAFT_PLUGIN_PATH:
# - runs the installed graft-info, which must find libgraft through its
#   RUNPATH and every built backend plugin in <prefix>/lib/graft/plugins;
# - configures and builds the examples/ project against the install with
#   find_package(graft), and runs its tests (ctest), which include a program
#   that must load the installed plugins.
# PLUGINS lists the backend plugins this build made (onednn,jit,vulkan).
string(REPLACE "," ";" PLUGINS "${PLUGINS}")
string(RANDOM LENGTH 8 tag)
set(work /tmp/graft-install-test-${tag})
if(DEFINED ENV{TMPDIR})
  set(work $ENV{TMPDIR}/graft-install-test-${tag})
endif()
set(prefix ${work}/prefix)
function(run output)
  execute_process(COMMAND ${CMAKE_COMMAND} -E env --unset=LD_LIBRARY_PATH --unset=GRAFT_PLUGIN_PATH
                          --unset=GRAFT_PLUGINS ${ARGN}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    file(REMOVE_RECURSE ${work})
    message(FATAL_ERROR "command failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(${output} "${out}" PARENT_SCOPE)
endfunction()
function(expect text pattern what)
  if(NOT text MATCHES "${pattern}")
    file(REMOVE_RECURSE ${work})
    message(FATAL_ERROR "${what}: no match for '${pattern}' in:\n${text}")
  endif()
endfunction()

run(out ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
run(info ${prefix}/bin/graft-info)
foreach(plugin IN LISTS PLUGINS)
  expect("${info}" "${plugin} [^\n]*  ${prefix}/lib[^\n]*/graft/plugins/libgraft-${plugin}.so\n    loaded"
         "the installed graft-info")
endforeach()

run(out ${CMAKE_COMMAND} -S ${SOURCE_DIR}/examples -B ${work}/build -G Ninja -DCMAKE_PREFIX_PATH=${prefix}
        -DCMAKE_BUILD_TYPE=Release)
run(out ${CMAKE_COMMAND} --build ${work}/build)
run(out ${CMAKE_CTEST_COMMAND} --test-dir ${work}/build --output-on-failure)
message(STATUS "${out}")
run(listed ${work}/build/installed_plugins)
foreach(plugin IN LISTS PLUGINS)
  expect("${listed}" "${plugin} loaded from ${prefix}/lib[^\n]*/graft/plugins/libgraft-${plugin}.so"
         "a program built against the install")
endforeach()
file(REMOVE_RECURSE ${work})
