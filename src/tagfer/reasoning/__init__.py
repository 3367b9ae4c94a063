"""AU-grounded reasoning traces: the template and teacher builders (the trace grammar, phrases and the
task prompt live in :mod:`tagfer.core`; the trace file format in :mod:`tagfer.data.trace_file`)."""
