"""The pure core: model, validation, quantities, decisions, planner, status. No I/O."""
