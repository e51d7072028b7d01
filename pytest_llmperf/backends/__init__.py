"""The backends that run llama.cpp: the engine (our own timed loop), the streaming path
(llama-cpp-python's ``Llama``) and llama-bench, each registered with its knob table in
:mod:`pytest_llmperf.backends.protocol`; the runners that hold them (in process, or
isolated in a worker) and the one factory that picks a runner."""
