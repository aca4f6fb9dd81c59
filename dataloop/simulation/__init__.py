"""The simulation gate (#7): a versioned scenario suite, closed-loop and open-loop evaluation
of a candidate driving policy against production, and the release gate's decision.
``gate_run.gate_candidate`` is the entry point; ``gate.gate_result`` reads what it recorded."""
