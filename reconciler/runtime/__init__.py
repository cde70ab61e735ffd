"""The operator at run time: the loop, leader election, probes and metrics."""
