"""The recommendation store: its interface, SQLite and the custom resources."""
