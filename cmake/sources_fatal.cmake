# The fatal part of the observability layer: sources and link libraries
# (appended to MG_SOURCES, MG_LINK_LIBS, MG_INCLUDE_DIRS).
# The fatal report (docs/fatal-report.md): stacks symbolised with elfutils'
# libdw (Debian libdw-dev), the W3C trace context.
pkg_check_modules(MG_DW REQUIRED libdw)
list(APPEND MG_SOURCES
  src/obs/fatal_stack.c
  src/obs/fatal_traceparent.c)
list(APPEND MG_LINK_LIBS ${MG_DW_LINK_LIBRARIES} ${CMAKE_DL_LIBS})
list(APPEND MG_INCLUDE_DIRS ${MG_DW_INCLUDE_DIRS})
