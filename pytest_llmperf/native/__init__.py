"""The ground floor: the one place that binds llama.cpp's C API (through llama-cpp-python's
low-level module). Everything above imports from here; nothing here imports upward."""
