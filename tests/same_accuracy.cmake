# graft-train reaches the same Fashion-MNIST accuracy on each of BACKENDS (a
# comma-separated list) as on the reference backend, for the MLP and the CNN (on subsets, one
# epoch): all above 70% and within 3 points of the reference.
# CNN_LIMIT (default 3000) trains the CNN on fewer images, for a backend as
# slow as a CPU Vulkan driver.
if(NOT CNN_LIMIT)
  set(CNN_LIMIT 3000)
endif()
function(per_mille model backend result)
  set(limit 3000)
  if(model STREQUAL "cnn")
    set(limit ${CNN_LIMIT})
  endif()
  execute_process(COMMAND ${TRAIN} --model ${model} --backend ${backend} --epochs 1 --limit ${limit} --test-limit 1000
                  --seed 5 OUTPUT_VARIABLE out RESULT_VARIABLE rc)
  string(REGEX MATCH "test accuracy 0\\.([0-9][0-9][0-9])" line "${out}")
  if(NOT rc EQUAL 0 OR NOT line)
    message(FATAL_ERROR "graft-train --model ${model} --backend ${backend} failed:\n${out}")
  endif()
  math(EXPR value "1${CMAKE_MATCH_1} - 1000")  # no leading zero read as octal
  set(${result} ${value} PARENT_SCOPE)
endfunction()
string(REPLACE "," ";" BACKENDS "${BACKENDS}")
foreach(model mlp cnn)
  per_mille(${model} reference want)
  foreach(backend IN LISTS BACKENDS)
    per_mille(${model} ${backend} got)
    message(STATUS "${model}: reference 0.${want}, ${backend} 0.${got}")
    math(EXPR diff "${got} - ${want}")
    if(want LESS 700 OR got LESS 700 OR diff GREATER 30 OR diff LESS -30)
      message(FATAL_ERROR "${model}: accuracy on ${backend} (0.${got}) is not that of the reference backend (0.${want})")
    endif()
  endforeach()
endforeach()
