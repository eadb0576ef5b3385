# mg_add_go_program(<target> <output-name> <main.go>)
# Builds a single-file Go program with the Go 1.19 toolchain (golang-go),
# offline: no modules, caches inside the build tree.
find_program(GO_EXECUTABLE go PATHS /usr/lib/go-1.19/bin)
function(mg_add_go_program target outname src)
  if(NOT GO_EXECUTABLE)
    message(FATAL_ERROR "go not found: install golang-go (make deps does)")
  endif()
  set(out ${CMAKE_CURRENT_BINARY_DIR}/${outname})
  add_custom_command(OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -E env GO111MODULE=off GOFLAGS=
            GOCACHE=${CMAKE_BINARY_DIR}/go-cache GOPATH=${CMAKE_BINARY_DIR}/go-path
            ${GO_EXECUTABLE} build -o ${out} ${CMAKE_CURRENT_SOURCE_DIR}/${src}
    DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${src}
    COMMENT "go build ${outname}" VERBATIM)
  add_custom_target(${target} ALL DEPENDS ${out})
  set_property(TARGET ${target} PROPERTY GO_OUTPUT ${out})
endfunction()
