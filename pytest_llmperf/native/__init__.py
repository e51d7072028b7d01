"""The ground floor: the one place that binds llama.cpp's C API (through llama-cpp-python's
low-level module). ``llama_lib``: the library, its log, devices, threadpools, NUMA;
``model``: every struct and call on models and contexts; ``llama_log``: what llama.cpp's
log lines say. Everything above imports from here; nothing here imports upward."""
