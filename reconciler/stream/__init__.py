"""The recommendation stream: protocol code (``gen``), client, reference platform."""
