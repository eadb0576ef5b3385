# The metrics part of the observability layer: sources and link libraries
# (appended to MG_SOURCES, MG_LINK_LIBS, MG_INCLUDE_DIRS).
