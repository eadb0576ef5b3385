# The metrics part of the observability layer: sources and link libraries
# (appended to MG_SOURCES, MG_LINK_LIBS, MG_INCLUDE_DIRS).
# mg_metrics_render: Prometheus text 0.0.4 from the registry's samples.
list(APPEND MG_SOURCES src/obs/metrics.c)
