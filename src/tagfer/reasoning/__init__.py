"""AU-grounded reasoning: the trace grammar, prompts, and the template / teacher trace builders."""

from tagfer.reasoning.trace import ParsedTrace, Trace, TraceStep, format_box, parse_trace, render_trace

__all__ = ["ParsedTrace", "Trace", "TraceStep", "format_box", "parse_trace", "render_trace"]
