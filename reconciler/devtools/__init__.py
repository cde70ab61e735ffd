"""Tools for development and demos (the reference platform), not the operator."""
