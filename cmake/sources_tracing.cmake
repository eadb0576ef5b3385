# The tracing part of the observability layer: sources and link libraries
# (appended to MG_SOURCES, MG_LINK_LIBS, MG_INCLUDE_DIRS).
#   src/obs/probes.c  the USDT probes' semaphores (section .probes)
#   src/obs/trace.c   the growth timeline (Chrome Trace Event JSON)
# The probes need only the header <sys/sdt.h> (systemtap-sdt-dev) at build
# time, nothing at run time; without it they compile to nothing.
list(APPEND MG_SOURCES src/obs/trace.c src/obs/probes.c)
